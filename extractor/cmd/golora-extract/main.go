// Command golora-extract turns Go source trees into instruction/output pairs
// (doc comment -> function) for LoRA training.
//
// Usage:
//
//	golora-extract run [--config FILE]   extract a dataset; the config is one JSON
//	                                     document from FILE or $GOLORA_CONFIG
//	golora-extract check [FILE|-]        report how many JSONL snippets parse as Go
//	golora-extract check --typecheck [--goroot DIR] [FILE|-]
//	                                     also type-check snippets of standard library
//	                                     pairs ("meta") in place of the original function
//
// run exits 0 on success, 2 for an invalid config or source, 3 when a source
// cannot be found or fetched, 4 when no pair survives the filters, 1 otherwise.
// When the config names a statusTarget, progress and the result are patched
// into that object's status subresource.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golora.dev/extractor/check"
	"golora.dev/extractor/config"
	"golora.dev/extractor/failure"
	"golora.dev/extractor/pipeline"
	"golora.dev/extractor/report"
	"golora.dev/extractor/source"
)

func main() {
	// git runs this binary as GIT_ASKPASS with the prompt as its argument.
	if file := os.Getenv(source.AskpassFileEnv); file != "" {
		os.Exit(askpass(file, os.Args[1:]))
	}
	if os.Getenv("GOGC") == "" {
		// Parsing allocates many short-lived nodes; collecting half as often
		// saves about a tenth of the CPU time for a larger heap.
		debug.SetGCPercent(200)
	}
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// Main runs the command with args (without the program name) and returns
// the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], stderr, getenv)
	case "check":
		return checkCmd(args[1:], stdin, stdout, stderr, getenv)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "golora-extract: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  golora-extract run [--config FILE]   extract a dataset (config from FILE or $GOLORA_CONFIG)
  golora-extract check [FILE|-]        count JSONL snippets ("code" or "output") that parse as Go
  golora-extract check --typecheck [--goroot DIR] [FILE|-]
                                       also type-check each snippet whose "meta" (as the
                                       extractor writes it) names a standard library function,
                                       in that function's place in its own package
`)
}

func runCmd(args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "config file (JSON); default $"+config.EnvVar)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "golora-extract run: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s golora-extract: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
	}

	cfg, cfgErr := config.Load(*file, getenv)
	var rep *report.Reporter
	if cfg != nil {
		var err error
		if rep, err = report.New(cfg.StatusTarget, getenv, logf); err != nil {
			logf("status reporting disabled: %v", err)
			rep = nil
		} else if rep != nil {
			logf("reporting status to %s", rep.URL())
		}
	}
	if cfgErr != nil {
		return fail(rep, cfgErr, logf, getenv)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	res, err := pipeline.Run(ctx, cfg, pipeline.Options{Reporter: rep, Logf: logf})
	if err != nil {
		return fail(rep, err, logf, getenv)
	}
	if err := rep.Result(res); err != nil {
		logf("could not report the result (the dataset is written; result.json holds it): %v", err)
	}
	return 0
}

// fail reports a failure everywhere a user may look for it and returns the
// exit status for its reason.
func fail(rep *report.Reporter, err error, logf func(string, ...any), getenv func(string) string) int {
	fe := failure.As(err)
	logf("failed: %s: %s", fe.Reason, fe.Message)
	report.WriteTerminationLog(getenv, fe.Message)
	if rerr := rep.Failure(string(fe.Reason), fe.Message); rerr != nil {
		logf("could not report the failure: %v", rerr)
	}
	return fe.Reason.ExitCode()
}

func checkCmd(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	typecheck := fs.Bool("typecheck", false, `also type-check snippets whose "meta" names a standard library function, in its place`)
	goroot := fs.String("goroot", "", "GOROOT whose src/ holds the standard library (default $GOROOT, else `go env GOROOT`)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: golora-extract check [--typecheck [--goroot DIR]] [FILE|-]")
		return 2
	}
	in := stdin
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "golora-extract check: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	bad := func(line int, err error) {
		fmt.Fprintf(stderr, "golora-extract check: line %d: %v (counted as not parsed)\n", line, err)
	}
	var rep check.Report
	var err error
	if *typecheck {
		var tc *check.TypeChecker
		note := ""
		root := findGoroot(*goroot, getenv)
		if root == "" {
			note = "no GOROOT with sources (--goroot, $GOROOT or go on PATH)"
		} else if tc, err = check.NewTypeChecker(root); err != nil {
			note = err.Error()
		}
		rep, err = check.ReaderWith(in, tc, note, bad)
	} else {
		rep, err = check.Reader(in, bad)
	}
	if err != nil {
		fmt.Fprintf(stderr, "golora-extract check: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(rep); err != nil {
		return 1
	}
	return 0
}

// findGoroot is the flag, else $GOROOT, else what `go env GOROOT` says.
func findGoroot(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := getenv("GOROOT"); v != "" {
		return v
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func askpass(file string, args []string) int {
	prompt := ""
	if len(args) > 0 {
		prompt = args[0]
	}
	answer, err := source.Askpass(prompt, file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "golora-extract askpass: %v\n", err)
		return 1
	}
	fmt.Println(answer)
	return 0
}
