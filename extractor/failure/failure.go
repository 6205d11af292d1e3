// Package failure names the ways an extraction run can fail.
//
// A failure carries a CamelCase reason that the operator maps to a condition
// and a message a user can act on; the reason also fixes the process exit
// code, so a Job's exit status alone says which kind of failure happened.
package failure

import (
	"errors"
	"fmt"
)

// Reason is the CamelCase cause reported in status.result.failure.reason.
type Reason string

// The reasons a run can fail with.
const (
	InvalidConfig     Reason = "InvalidConfig"
	InvalidSource     Reason = "InvalidSource"
	SourceNotFound    Reason = "SourceNotFound"
	SourceFetchFailed Reason = "SourceFetchFailed"
	EmptyDataset      Reason = "EmptyDataset"
	WriteFailed       Reason = "WriteFailed"
	Internal          Reason = "Internal"
)

// ExitCode is the process exit status for a reason: 2 for a bad spec, 3 for a
// source that cannot be reached, 4 for an empty dataset, 1 for anything else.
func (r Reason) ExitCode() int {
	switch r {
	case InvalidConfig, InvalidSource:
		return 2
	case SourceNotFound, SourceFetchFailed:
		return 3
	case EmptyDataset:
		return 4
	}
	return 1
}

// Error is a failure with its reason.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }

// New returns an *Error with a formatted message.
func New(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// As returns err as an *Error, wrapping any other error as Internal.
func As(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Reason: Internal, Message: err.Error()}
}
