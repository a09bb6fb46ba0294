package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat. The kernel
// fixes it at 100 on every architecture Go supports on Linux.
const clockTicks = 100

// ParseProcStat extracts utime and stime, in clock ticks, from the contents
// of /proc/PID/stat. The command name (field 2) is parenthesised and may
// itself contain spaces and parentheses, so fields are counted from the last
// closing parenthesis.
func ParseProcStat(b []byte) (utime, stime uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("proc stat: no command name in %q", truncate(b))
	}
	// Fields after the name start with field 3 (state); utime and stime are
	// fields 14 and 15.
	f := bytes.Fields(b[i+1:])
	const utimeAt, stimeAt = 14 - 3, 15 - 3
	if len(f) <= stimeAt {
		return 0, 0, fmt.Errorf("proc stat: %d fields after the name, want at least %d", len(f), stimeAt+1)
	}
	if utime, err = strconv.ParseUint(string(f[utimeAt]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	if stime, err = strconv.ParseUint(string(f[stimeAt]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return utime, stime, nil
}

// TicksToDuration converts clock ticks of /proc/PID/stat to a duration.
func TicksToDuration(ticks uint64) time.Duration {
	return time.Duration(ticks) * (time.Second / clockTicks)
}

// ProcessCPU returns the CPU time (user plus system, all threads) the
// process pid has used so far, from /proc/PID/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	u, s, err := ParseProcStat(b)
	if err != nil {
		return 0, err
	}
	return TicksToDuration(u + s), nil
}

// ParseSchedstat returns the time on CPU, the first field of
// /proc/PID/task/TID/schedstat, in nanoseconds.
func ParseSchedstat(b []byte) (time.Duration, error) {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, errors.New("schedstat: empty")
	}
	ns, err := strconv.ParseUint(string(f[0]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(ns), nil
}

// threadsCPU sums the time on CPU of the live threads of pid, with
// nanosecond resolution. Threads that have ended are missing from it.
func threadsCPU(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return 0, err
		}
		d, err := ParseSchedstat(b)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// CPUSample is a reading of a process's CPU time from two sources.
type CPUSample struct {
	// Stat is utime+stime of /proc/PID/stat: every thread, ended ones
	// included, but in 10 ms clock ticks.
	Stat time.Duration `json:"stat_ns"`
	// Threads is the sum of the live threads' schedstat run times, to the
	// nanosecond; zero when the kernel does not provide it.
	Threads time.Duration `json:"threads_ns"`
}

// ReadCPU samples the CPU time of process pid.
func ReadCPU(pid int) (CPUSample, error) {
	st, err := ProcessCPU(pid)
	if err != nil {
		return CPUSample{}, err
	}
	th, err := threadsCPU(pid)
	if err != nil {
		th = 0
	}
	return CPUSample{Stat: st, Threads: th}, nil
}

// CPUUsed is the CPU time used between two samples. It is the precise
// per-thread figure when both samples have one and it agrees with the
// coarse counter to within the counter's resolution (it would not if a
// thread had ended in between), and the coarse counter otherwise.
func CPUUsed(before, after CPUSample) time.Duration {
	coarse := after.Stat - before.Stat
	if before.Threads == 0 || after.Threads == 0 {
		return coarse
	}
	fine := after.Threads - before.Threads
	// Each coarse reading is truncated to a tick; allow one more tick for
	// the time between reading the two sources.
	const slack = 3 * time.Second / clockTicks
	if fine < coarse-slack || fine > coarse+slack {
		return coarse
	}
	return fine
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// ParseLoadavg returns the one-minute load average and the three averages
// as text from the contents of /proc/loadavg.
func ParseLoadavg(b []byte) (load1 float64, text string, err error) {
	f := bytes.Fields(b)
	if len(f) < 3 {
		return 0, "", fmt.Errorf("loadavg: %q has fewer than 3 fields", truncate(b))
	}
	if load1, err = strconv.ParseFloat(string(f[0]), 64); err != nil {
		return 0, "", fmt.Errorf("loadavg: %w", err)
	}
	return load1, string(bytes.Join(f[:3], []byte(" "))), nil
}

// LoadAverage reads the system's load averages.
func LoadAverage() (load1 float64, text string, err error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, "", err
	}
	return ParseLoadavg(b)
}
