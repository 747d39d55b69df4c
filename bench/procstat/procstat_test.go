package procstat

import (
	"os"
	"testing"
)

func TestParse(t *testing.T) {
	rss, err := parseRSS([]byte("Name:\tx\nVmPeak:\t  1 kB\nVmRSS:\t   2048 kB\n"))
	if err != nil || rss != 2048*1024 {
		t.Fatalf("rss %d %v", rss, err)
	}
	cpu, err := parseCPU([]byte("123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0"))
	if err != nil || cpu != 3.0 {
		t.Fatalf("cpu %v %v", cpu, err)
	}
	s, err := Read(os.Getpid())
	if err != nil || s.RSS < 1<<20 {
		t.Fatalf("self %+v %v", s, err)
	}
}
