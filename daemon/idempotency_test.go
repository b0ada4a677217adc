package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
)

// TestParallelEnablesOneOperation: ten identical enable requests at once
// all get 202 with the same operation; only one evacuation is recorded.
func TestParallelEnablesOneOperation(t *testing.T) {
	dev, c := startDev(t, 4, 8)
	hosts := waitInventory(t, c, 4, 8)
	for _, h := range hosts[:2] {
		var wg sync.WaitGroup
		codes := make([]int, 10)
		ops := make([]string, 10)
		for i := range codes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				code, _, body := send(t, "PUT", dev.APIAddr()+"/v1/hosts/"+h.Name+"/maintenance", "", `{"status":"enable","migrate":"none"}`)
				var ref api.OperationRef
				json.Unmarshal([]byte(body), &ref)
				codes[i], ops[i] = code, ref.Operation
				if code != http.StatusAccepted {
					t.Errorf("enable %d of %s: %d %s", i, h.Name, code, body)
				}
			}(i)
		}
		wg.Wait()
		for i := range ops {
			if ops[i] != ops[0] {
				t.Errorf("enables of %s answered with different operations: %v", h.Name, ops)
				break
			}
		}
		n := 0
		for _, op := range dev.Node().FSM().State().Operations {
			if op.Host == h.Name && op.Kind == cluster.OpEvacuate {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d evacuations of %s recorded, want 1", n, h.Name)
		}
	}
}

// TestIdempotencyKeyReplaysTheFirstAnswer: retries with the same
// Idempotency-Key (one after another, or at once) get the first answer and
// write nothing again; the key used for another request is refused.
func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	dev, c := startDev(t, 1, 0)
	waitInventory(t, c, 1, 0)
	post := func(key, body string) (int, http.Header, string) {
		return sendHeaders(t, "POST", dev.APIAddr()+"/v1/events", "", body, map[string]string{"Idempotency-Key": key})
	}
	code1, _, body1 := post("retry-1", `{"type":"note","message":"once"}`)
	code2, h2, body2 := post("retry-1", `{"type":"note","message":"once"}`)
	if code1 != 201 || code2 != 201 || body1 != body2 || h2.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry with the same key: %d %s / %d %s %v", code1, body1, code2, body2, h2)
	}
	if code, _, body := post("retry-1", `{"type":"note","message":"something else"}`); code != 422 || !strings.Contains(body, "Idempotency-Key") {
		t.Fatalf("key reused for another request: %d %s", code, body)
	}
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _, body := post("at-once", `{"type":"note","message":"at once"}`); code != 201 {
				t.Errorf("concurrent retry: %d %s", code, body)
			}
		}()
	}
	wg.Wait()
	counts := map[string]int{}
	for _, e := range dev.Node().FSM().State().Events {
		counts[e.Message]++
	}
	if counts["once"] != 1 || counts["at once"] != 1 || counts["something else"] != 0 {
		t.Fatalf("notes stored: %v, want each once", counts)
	}
}
