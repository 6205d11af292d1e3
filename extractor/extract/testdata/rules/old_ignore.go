// +build ignore

package main

// oldStyleIgnored is in a file excluded with an old +build line.
func oldStyleIgnored() {
	for i := 0; i < 3; i++ {
		println(i)
	}
	println("done")
}
