// Package procstat samples a process's resident memory and CPU time from /proc.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClockTick is USER_HZ, 100 on every Linux the project targets.
const ClockTick = 100

// RSS returns VmRSS of pid in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

func parseRSS(b []byte) (int64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("VmRSS:")) {
			f := strings.Fields(string(line[6:]))
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("procstat: no VmRSS")
}

// CPU returns utime+stime of pid in seconds.
func CPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseCPU(b)
}

func parseCPU(b []byte) (float64, error) {
	// comm may contain spaces and parens: fields start after the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("procstat: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// after ')' : state(3) ppid(4) ... utime is field 14, stime 15 (1-based) => index 11, 12 here
	if len(f) < 13 {
		return 0, errors.New("procstat: short stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("procstat: bad utime/stime")
	}
	return float64(u+s) / ClockTick, nil
}

// Sample is one RSS+CPU reading.
type Sample struct {
	RSS int64
	CPU float64
}

// Read returns both values; errors leave zero values.
func Read(pid int) (Sample, error) {
	r, err := RSS(pid)
	if err != nil {
		return Sample{}, err
	}
	c, err := CPU(pid)
	return Sample{RSS: r, CPU: c}, err
}
