package failure

import (
	"errors"
	"fmt"
	"testing"
)

func TestExitCodes(t *testing.T) {
	for r, want := range map[Reason]int{
		InvalidConfig: 2, InvalidSource: 2, SourceNotFound: 3, SourceFetchFailed: 3,
		EmptyDataset: 4, WriteFailed: 1, Internal: 1,
	} {
		if got := r.ExitCode(); got != want {
			t.Errorf("%s: exit %d, want %d", r, got, want)
		}
	}
}

func TestAs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", New(SourceNotFound, "claim %q", "x"))
	if fe := As(err); fe.Reason != SourceNotFound || fe.Message != `claim "x"` {
		t.Errorf("As(wrapped) = %+v", fe)
	}
	if fe := As(errors.New("boom")); fe.Reason != Internal || fe.Message != "boom" {
		t.Errorf("As(plain) = %+v", fe)
	}
}
