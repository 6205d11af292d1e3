package extract

// Reason says why a file or a function did not become a pair.
type Reason uint8

// File-level reasons come first, then function-level ones, then the reasons
// later stages (deduplication, the pair cap) drop pairs for.
const (
	None Reason = iota

	Test        // a _test.go file
	Testdata    // under a testdata/ directory
	Vendor      // under vendor/, third_party/ or Godeps/
	Generated   // "// Code generated ... DO NOT EDIT." before the package clause
	BuildIgnore // a //go:build constraint that needs the "ignore" tag
	Symlink     // a symbolic link, never followed

	NoBody        // declared without a body (implemented in assembly)
	NoDoc         // no doc comment
	DirectiveOnly // a doc comment holding only tool directives
	TooShort      // fewer lines than filters.minLines
	DocTooShort   // fewer doc words than filters.minDocWords
	Unexported    // unexported while filters.exportedOnly is set
	TooLong       // source larger than filters.maxOutputBytes

	ExactDuplicate // same normalized source as an earlier pair
	NearDuplicate  // MinHash-similar to an earlier pair
	MaxPairs       // beyond the maxPairs cap

	NumReasons
)

var reasonNames = [NumReasons]string{
	None: "", Test: "test", Testdata: "testdata", Vendor: "vendor", Generated: "generated",
	BuildIgnore: "buildIgnore", Symlink: "symlink", NoBody: "noBody", NoDoc: "noDoc",
	DirectiveOnly: "directiveOnly", TooShort: "tooShort", DocTooShort: "docTooShort",
	Unexported: "unexported", TooLong: "tooLong", ExactDuplicate: "exactDuplicate",
	NearDuplicate: "nearDuplicate", MaxPairs: "maxPairs",
}

// String returns the camelCase name used in stats.json.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Counts holds a count per reason.
type Counts [NumReasons]int

// Add adds every count of o to c.
func (c *Counts) Add(o *Counts) {
	for i := range c {
		c[i] += o[i]
	}
}

// Map returns the non-zero counts keyed by reason name.
func (c *Counts) Map() map[string]int {
	m := map[string]int{}
	for r, n := range c {
		if n != 0 && Reason(r) != None {
			m[Reason(r).String()] = n
		}
	}
	return m
}
