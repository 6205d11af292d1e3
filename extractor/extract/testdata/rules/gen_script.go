//go:build ignore

// This program generates tables; it is run by go generate.
package main

// main writes the lookup tables to standard output.
func main() {
	for i := 0; i < 3; i++ {
		println(i)
	}
	println("done")
}
