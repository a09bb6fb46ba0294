package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	const tail = " S 1 1234 1234 0 -1 4194560 1500 0 0 0 %s %s 0 0 20 0 9 0 555 123456789 4000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	line := func(name, utime, stime string) string {
		return "4242 (" + name + ")" + strings.Replace(strings.Replace(tail, "%s", utime, 1), "%s", stime, 1)
	}
	tests := []struct {
		name         string
		in           string
		utime, stime uint64
		wantErr      bool
	}{
		{"plain", line("sovra", "1234", "56"), 1234, 56, false},
		{"name with spaces", line("ollama sim", "7", "8"), 7, 8, false},
		{"name with parentheses", line("a) (b", "10", "20"), 10, 20, false},
		{"name that looks like fields", line("x) S 1 2 3 4 5 6 7 8 9 10 11 99 99", "3", "4"), 3, 4, false},
		{"zero times", line("idle", "0", "0"), 0, 0, false},
		{"large counters", line("busy", "18446744073709551615", "1"), 18446744073709551615, 1, false},
		{"no name", "4242 sovra S 1 2 3", 0, 0, true},
		{"too few fields", "4242 (sovra) S 1 1234 1234 0 -1 4194560 1500 0 0 0 12", 0, 0, true},
		{"not a number", line("sovra", "12x", "5"), 0, 0, true},
		{"negative", line("sovra", "5", "-5"), 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, s, err := ParseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseProcStat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if u != tt.utime || s != tt.stime {
				t.Errorf("ParseProcStat(%q) = %d, %d, want %d, %d", tt.in, u, s, tt.utime, tt.stime)
			}
		})
	}
}

func TestTicksToDuration(t *testing.T) {
	if got := TicksToDuration(250); got != 2500*time.Millisecond {
		t.Errorf("TicksToDuration(250) = %v, want 2.5s", got)
	}
}

func TestProcessCPUOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the counter moves (it has a 10 ms resolution).
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		after, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
	}
	t.Errorf("CPU time did not grow after 5s of work (x=%d)", x)
}

func TestParseLoadavg(t *testing.T) {
	tests := []struct {
		in      string
		load1   float64
		text    string
		wantErr bool
	}{
		{"0.52 0.58 0.59 1/467 12345\n", 0.52, "0.52 0.58 0.59", false},
		{"7.58 5.29 2.67 9/900 1", 7.58, "7.58 5.29 2.67", false},
		{"1.00 2.00", 0, "", true},
		{"x 1 2 3/4 5", 0, "", true},
		{"", 0, "", true},
	}
	for _, tt := range tests {
		l, text, err := ParseLoadavg([]byte(tt.in))
		if (err != nil) != tt.wantErr || l != tt.load1 || text != tt.text {
			t.Errorf("ParseLoadavg(%q) = %v, %q, %v; want %v, %q, error %v", tt.in, l, text, err, tt.load1, tt.text, tt.wantErr)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"156642206 204985306 576\n", 156642206, false},
		{"0 0 0", 0, false},
		{"12", 12, false},
		{"", 0, true},
		{"-5 1 1", 0, true},
		{"abc 1 1", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSchedstat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSchedstat(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCPUUsed(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name          string
		before, after CPUSample
		want          time.Duration
	}{
		{"precise when it agrees", CPUSample{100 * ms, 101234567}, CPUSample{150 * ms, 152345678}, 51111111},
		{"precise within a tick below", CPUSample{100 * ms, 100 * ms}, CPUSample{150 * ms, 141 * ms}, 41 * ms},
		{"coarse when a thread ended", CPUSample{100 * ms, 100 * ms}, CPUSample{500 * ms, 120 * ms}, 400 * ms},
		{"coarse when precise is far above", CPUSample{100 * ms, 100 * ms}, CPUSample{110 * ms, 200 * ms}, 10 * ms},
		{"coarse without thread figures", CPUSample{100 * ms, 0}, CPUSample{130 * ms, 0}, 30 * ms},
		{"coarse when only one sample has them", CPUSample{100 * ms, 0}, CPUSample{130 * ms, 31 * ms}, 30 * ms},
		{"nothing used", CPUSample{100 * ms, 100 * ms}, CPUSample{100 * ms, 100 * ms}, 0},
	}
	for _, tt := range tests {
		if got := CPUUsed(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: CPUUsed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestReadCPUOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	a, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	b, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if b.Threads != 0 && b.Threads <= a.Threads {
		t.Errorf("thread CPU did not grow: %v then %v (x=%d)", a.Threads, b.Threads, x)
	}
	if used := CPUUsed(a, b); used < 0 {
		t.Errorf("negative CPU used: %v", used)
	}
}
