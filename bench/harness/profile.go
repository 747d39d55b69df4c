package harness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/bench/procstat"
	"github.com/wsgate/wsgate/bench/report"
)

// sampler is what the message scenarios sample for server RSS/CPU: one
// Instance or several (cross-instance runs) summed.
type sampler interface {
	Sample() procstat.Sample
}

type instances []*Instance

func (is instances) Sample() procstat.Sample {
	var s procstat.Sample
	for _, in := range is {
		x := in.Sample()
		s.RSS += x.RSS
		s.CPU += x.CPU
	}
	return s
}

func (e *Env) pprofArgs(ts TargetSpec) []string {
	if e.Profile {
		return ts.PprofArgs
	}
	return nil
}

func profilable(s sampler) []*Instance {
	var out []*Instance
	switch v := s.(type) {
	case *Instance:
		out = []*Instance{v}
	case instances:
		out = v
	}
	var r []*Instance
	for _, in := range out {
		if in.Admin != "" && len(in.Spec.PprofArgs) > 0 && in.cmd != nil {
			r = append(r, in)
		}
	}
	return r
}

var profMu sync.Mutex

// saveProfile fetches path from the instance's admin port into
// <out>/profiles/<scenario>-<target>[-N]-<kind>.pprof and lists it in r.
func (e *Env) saveProfile(s sampler, r *report.Result, kind, path string) {
	for i, in := range profilable(s) {
		name := fmt.Sprintf("%s-%s", r.Scenario, strings.ReplaceAll(r.Target, "/", "_"))
		if len(profilable(s)) > 1 {
			name += fmt.Sprintf("-%d", i)
		}
		name += "-" + kind + ".pprof"
		rel := filepath.Join("profiles", name)
		if err := fetchTo(filepath.Join(e.OutDir, rel), "http://"+in.Admin+path, time.Minute); err != nil {
			e.logf("   profile %s: %v", name, err)
			continue
		}
		profMu.Lock()
		r.Profiles = append(r.Profiles, rel)
		profMu.Unlock()
	}
}

// profileWindow starts a CPU profile of d on every profilable instance; the
// returned func waits for them.
func (e *Env) profileWindow(s sampler, r *report.Result, d time.Duration) func() {
	if !e.Profile || len(profilable(s)) == 0 {
		return func() {}
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.saveProfile(s, r, "cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	}()
	return func() { <-done }
}

func fetchTo(file, url string, timeout time.Duration) error {
	cl := &http.Client{Timeout: timeout}
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// scrapeMetrics sums the gateway's /metrics lines whose name{labels} start
// with one of prefixes (e.g. `wsgate_closes_total{code="4009"}`).
func scrapeMetrics(admin string, prefixes ...string) map[string]int64 {
	if admin == "" {
		return nil
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				f := strings.Fields(line)
				var v float64
				if len(f) >= 2 {
					fmt.Sscanf(f[len(f)-1], "%g", &v)
				}
				out[p] += int64(v)
			}
		}
	}
	return out
}
