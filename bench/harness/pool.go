package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/bench/procstat"
)

// WorkerCommand returns the command that starts one worker process. The
// default re-executes the running binary as `<exe> worker`; tests replace it.
var WorkerCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "worker"), nil
}

type wproc struct {
	idx     int
	cmd     *exec.Cmd
	in      io.WriteCloser
	enc     *json.Encoder
	replies chan Event
	pid     int
	mu      sync.Mutex
	last    Progress
	dead    chan struct{}
}

// Pool is a set of worker processes.
type Pool struct {
	ws    []*wproc
	label string
	extra func() string
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
}

// StartPool starts n workers, sending each the init from mk.
func StartPool(n int, mk func(i int) WorkerInit) (*Pool, error) {
	p := &Pool{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		cmd, err := WorkerCommand()
		if err != nil {
			p.Close()
			return nil, err
		}
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			p.Close()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			p.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			p.Close()
			return nil, fmt.Errorf("start worker: %w", err)
		}
		w := &wproc{idx: i, cmd: cmd, in: in, enc: json.NewEncoder(in), replies: make(chan Event, 16), dead: make(chan struct{}), pid: cmd.Process.Pid}
		p.ws = append(p.ws, w)
		go w.read(out)
		init := mk(i)
		init.Index = i
		if err := w.enc.Encode(init); err != nil {
			p.Close()
			return nil, err
		}
		select {
		case ev := <-w.replies:
			if ev.Ev != "hello" {
				p.Close()
				return nil, fmt.Errorf("worker %d: %s", i, ev.Error)
			}
		case <-w.dead:
			p.Close()
			return nil, fmt.Errorf("worker %d exited during start", i)
		case <-time.After(10 * time.Second):
			p.Close()
			return nil, fmt.Errorf("worker %d: no hello", i)
		}
	}
	return p, nil
}

func (w *wproc) read(r io.Reader) {
	defer close(w.dead)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Fprintf(os.Stderr, "worker %d: bad line: %.200s\n", w.idx, sc.Text())
			continue
		}
		if ev.Ev == "progress" {
			w.mu.Lock()
			w.last = *ev.Progress
			w.mu.Unlock()
			continue
		}
		if ev.Progress != nil {
			w.mu.Lock()
			w.last = *ev.Progress
			w.mu.Unlock()
		} else if ev.Stats != nil {
			w.mu.Lock()
			w.last = ev.Stats.Progress
			w.mu.Unlock()
		}
		w.replies <- ev
	}
}

// N is the number of workers.
func (p *Pool) N() int { return len(p.ws) }

// Pids are the worker process ids.
func (p *Pool) Pids() []int {
	var r []int
	for _, w := range p.ws {
		r = append(r, w.pid)
	}
	return r
}

// Do sends one command per worker (mk(i)) and waits for all replies.
func (p *Pool) Do(mk func(i int) Cmd, timeout time.Duration) ([]Event, error) {
	for i, w := range p.ws {
		if err := w.enc.Encode(mk(i)); err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
	}
	evs := make([]Event, len(p.ws))
	deadline := time.After(timeout)
	for i, w := range p.ws {
		select {
		case ev := <-w.replies:
			if ev.Ev == "error" {
				return nil, fmt.Errorf("worker %d: %s", i, ev.Error)
			}
			evs[i] = ev
		case <-w.dead:
			return nil, fmt.Errorf("worker %d died", i)
		case <-deadline:
			return nil, fmt.Errorf("worker %d: no reply within %v", i, timeout)
		}
	}
	return evs, nil
}

// All sends the same command to every worker.
func (p *Pool) All(c Cmd, timeout time.Duration) ([]Event, error) {
	return p.Do(func(int) Cmd { return c }, timeout)
}

// Poll returns fresh summed counters.
func (p *Pool) Poll() (Progress, error) {
	evs, err := p.All(Cmd{Op: "poll"}, 10*time.Second)
	if err != nil {
		return Progress{}, err
	}
	var s Progress
	for _, ev := range evs {
		if ev.Progress != nil {
			s = addProgress(s, *ev.Progress)
		}
	}
	return s, nil
}

func addProgress(a, b Progress) Progress {
	a.Open += b.Open
	a.Connecting += b.Connecting
	a.Dials += b.Dials
	a.Failed += b.Failed
	a.Closed += b.Closed
	a.Sent += b.Sent
	a.SendFailed += b.SendFailed
	a.Recv += b.Recv
	a.RecvWindow += b.RecvWindow
	a.SentWindow += b.SentWindow
	a.Other += b.Other
	a.BytesIn += b.BytesIn
	a.Reopened += b.Reopened
	a.Ready += b.Ready
	a.SlowRecv += b.SlowRecv
	a.Errors += b.Errors
	a.Dups += b.Dups
	return a
}

// Last sums the latest counters without asking the workers.
func (p *Pool) Last() Progress {
	var s Progress
	for _, w := range p.ws {
		w.mu.Lock()
		s = addProgress(s, w.last)
		w.mu.Unlock()
	}
	return s
}

// ClientSample sums RSS and CPU of all workers.
func (p *Pool) ClientSample() procstat.Sample {
	var s procstat.Sample
	for _, w := range p.ws {
		if x, err := procstat.Read(w.pid); err == nil {
			s.RSS += x.RSS
			s.CPU += x.CPU
		}
	}
	return s
}

// StartProgress prints one status line per second on stderr until StopProgress.
func (p *Pool) StartProgress(label string, extra func() string) {
	p.mu.Lock()
	p.label, p.extra = label, extra
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		prev := p.Last()
		prevT := start
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				cur := p.Last()
				dt := now.Sub(prevT).Seconds()
				var b strings.Builder
				p.mu.Lock()
				fmt.Fprintf(&b, "[%s] t=%3.0fs open=%d connecting=%d failed=%d dropped=%d sent=%.0f/s recv=%.0f/s",
					p.label, now.Sub(start).Seconds(), cur.Open, cur.Connecting, cur.Failed, cur.Closed,
					float64(cur.Sent-prev.Sent)/dt, float64(cur.Recv-prev.Recv)/dt)
				if cur.Reopened > 0 {
					fmt.Fprintf(&b, " reopened=%d", cur.Reopened)
				}
				if p.extra != nil {
					b.WriteString(" ")
					b.WriteString(p.extra())
				}
				p.mu.Unlock()
				fmt.Fprintln(os.Stderr, b.String())
				prev, prevT = cur, now
			}
		}
	}()
}

// Close stops progress printing and all workers.
func (p *Pool) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
	for _, w := range p.ws {
		_ = w.enc.Encode(Cmd{Op: "exit"})
		_ = w.in.Close()
	}
	for _, w := range p.ws {
		select {
		case <-w.dead:
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
		}
		_ = w.cmd.Wait()
	}
}
