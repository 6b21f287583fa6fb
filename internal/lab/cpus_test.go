package lab

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		err  bool
	}{
		{"0", []int{0}, false},
		{"0-2", []int{0, 1, 2}, false},
		{"3,0-1,1", []int{0, 1, 3}, false},
		{" 1 , 2 ", []int{1, 2}, false},
		{"", nil, true},
		{"a", nil, true},
		{"2-1", nil, true},
		{"-1", nil, true},
		{"0-99999", nil, true},
		{"1,", nil, true},
	}
	for _, tt := range tests {
		got, err := parseCPUList(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSplitCPUs(t *testing.T) {
	s, c, err := splitCPUs("1", []int{0, 1})
	if err != nil || !slices.Equal(s, []int{1}) || !slices.Equal(c, []int{0}) {
		t.Errorf("split 1 of 0,1: %v %v %v", s, c, err)
	}
	if _, _, err := splitCPUs("0-1", []int{0, 1}); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("all CPUs to the server: %v", err)
	}
	if _, _, err := splitCPUs("5", []int{0, 1}); err == nil {
		t.Error("a CPU the machine lacks was accepted")
	}
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3", "1,2,5-7", "", "x", "9-1", "0-4095"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := parseCPUList(s)
		if err != nil {
			return
		}
		if len(cpus) == 0 || !slices.IsSorted(cpus) || cpus[0] < 0 || cpus[len(cpus)-1] > maxCPU {
			t.Fatalf("parseCPUList(%q) = %v", s, cpus)
		}
		again, err := parseCPUList(formatCPUList(cpus))
		if err != nil || !slices.Equal(again, cpus) {
			t.Fatalf("round trip of %v: %v %v", cpus, again, err)
		}
	})
}
