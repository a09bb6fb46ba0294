package node_test

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// This file tests API keys' quotas end to end, through three nodes over
// simulated Ollamas: a key's limit holds across the cluster, not per
// node, and its answers carry the rate-limit headers and, over the
// limit, a 429 in each API family's format.

func TestQuotasAcrossThreeNodes(t *testing.T) {
	c := keyTestCluster(t)
	entry := c.url(c.ids[0])
	const rpm = 60
	k := newKey(t, entry, `{"name":"hammer","limits":{"requests_per_minute":`+strconv.Itoa(rpm)+`}}`)
	waitKeyEverywhere(t, c, k.Secret, http.StatusOK) // GETs count no request

	t.Run("a limited key's answers carry the headers", func(t *testing.T) {
		code, hdr, body := families[0].chat(t, entry, "chat", k.Secret, nil)
		if code != http.StatusOK || hdr.Get("x-ratelimit-limit-requests") != "60" ||
			hdr.Get("x-ratelimit-remaining-requests") == "" || hdr.Get("x-ratelimit-reset-requests") == "" {
			t.Fatalf("%d %v %s", code, hdr, body)
		}
	})
	t.Run("hammered from three nodes at once", func(t *testing.T) {
		ok, limited := hammerKey(t, c, k.Secret, 3*time.Second)
		// One request went before.
		t.Logf("quota overshoot at 3 nodes: %d admitted of %d allowed (%d refused)", ok, rpm-1, limited)
		if ok > rpm-1+2 || ok < rpm-1-2 {
			t.Fatalf("admitted %d, want %d (+2 at most)", ok, rpm-1)
		}
	})
	t.Run("429 in each family's format", func(t *testing.T) {
		for _, id := range c.ids {
			for _, f := range families {
				code, hdr, body := f.chat(t, c.url(id), "chat", k.Secret, nil)
				if code != http.StatusTooManyRequests || !f.errOK(body) || hdr.Get("Retry-After") == "" ||
					hdr.Get("x-ratelimit-remaining-requests") != "0" || hdr.Get("x-ratelimit-limit-requests") != "60" {
					t.Errorf("%s %s: %d %v %s", id, f.name, code, hdr, body)
				}
			}
		}
	})
}

// hammerKey sends chats with secret to every node at once (eight at a
// time per node) for d, several share windows, and counts the admitted
// and the refused.
func hammerKey(t *testing.T, c *simCluster, secret string, d time.Duration) (ok, limited int) {
	var okN, limN atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, id := range c.ids {
		url := c.url(id)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					switch code, _, _ := withKey(t, "POST", url+families[0].path, chatBody("chat"), secret, nil); code {
					case http.StatusOK:
						okN.Add(1)
					case http.StatusTooManyRequests:
						limN.Add(1)
					default:
						t.Errorf("%s: %d", url, code)
					}
				}
			}()
		}
	}
	wg.Wait()
	return int(okN.Load()), int(limN.Load())
}
