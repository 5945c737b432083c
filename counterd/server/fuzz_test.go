package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// FuzzJSONRequest posts arbitrary JSON bodies to the Connect endpoint. Every response is a
// success or a client error with a code; malformed input never becomes an internal error.
func FuzzJSONRequest(f *testing.F) {
	f.Add([]byte(`{"namespace":"default","counterName":"a","delta":"5","idempotencyToken":{"token":"t"}}`))
	f.Add([]byte(`{"namespace":"default","counterName":"a","delta":"-9223372036854775808"}`))
	f.Add([]byte(`{"namespace":"default","counterName":"a","idempotencyToken":{"token":"t","generationTime":"1970-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"namespace":"default","counterName":"a","idempotencyToken":{"token":"","generationTime":"9999-12-31T23:59:59Z"}}`))
	f.Add([]byte(`{"namespace":"default","counterName":"\u0000"}`))
	f.Add([]byte(`{"delta":1e400}`))
	f.Add([]byte(`not json`))

	srv := startServer(f, "", f.TempDir())
	f.Cleanup(func() { _ = srv.Close() })
	url := "http://" + srv.Addr() + "/counter.v1.CounterService/AddAndGetCount"
	client := &http.Client{}

	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		var e struct{ Code string }
		if err := json.Unmarshal(payload, &e); err != nil {
			t.Fatalf("status %d with a body that is not a Connect error: %q", resp.StatusCode, payload)
		}
		switch e.Code {
		case "invalid_argument", "failed_precondition", "already_exists", "not_found":
		default:
			t.Fatalf("body %q got status %d code %q, want a client error", body, resp.StatusCode, e.Code)
		}
	})
}
