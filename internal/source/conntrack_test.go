package source

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseConntrackStat(t *testing.T) {
	tests := []struct {
		file    string
		entries uint64
		cpus    int
		sums    map[string]uint64
	}{
		// Real 6.18 namespace: 5 entries repeated on both CPU rows.
		{"testdata/proc-6.18-netns-ct/net/stat/nf_conntrack", 5, 2,
			map[string]uint64{"drop": 0, "early_drop": 0, "insert_failed": 0, "clashres": 0, "chainlength": 0}},
		// Hand-made 4.19 layout: drop 0x100+0xff+1, early_drop 0x10+0xf+1,
		// insert_failed 2+1, search_restart 0+2+1+4.
		{"testdata/proc-4.19-handmade/net/stat/nf_conntrack", 0x3fff0, 4,
			map[string]uint64{"drop": 512, "early_drop": 32, "insert_failed": 3, "search_restart": 7, "searched": 0, "delete_list": 0, "invalid": 0x35}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			st, err := ParseConntrackStat(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if st.Entries == nil || *st.Entries != tt.entries {
				t.Errorf("Entries = %v, want %d (not summed over rows)", st.Entries, tt.entries)
			}
			if st.CPUs != tt.cpus {
				t.Errorf("CPUs = %d, want %d", st.CPUs, tt.cpus)
			}
			for k, want := range tt.sums {
				got, ok := st.Sums[k]
				if !ok || got != want {
					t.Errorf("Sums[%s] = %d (present %v), want %d", k, got, ok, want)
				}
			}
			if _, ok := st.Sums["entries"]; ok {
				t.Error("entries must not be summed")
			}
		})
	}
}

func TestParseConntrackStatErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"header only", "entries drop\n", "no CPU rows"},
		{"no header", "00000001 00000002\n00000001 00000002\n", "header line missing"},
		{"short row", "entries drop\n00000001\n", "line 2: 1 values for 2 columns"},
		{"not hex", "entries drop\n00000001 zz\n", `line 2: column drop: "zz" is not hex`},
		{"repeated column", "drop drop\n1 2\n", `column "drop" repeated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConntrackStat(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseConntrackStat(f *testing.F) {
	for _, p := range []string{
		"testdata/proc-6.18/net/stat/nf_conntrack",
		"testdata/proc-6.18-netns-ct/net/stat/nf_conntrack",
		"testdata/proc-4.19-handmade/net/stat/nf_conntrack",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("entries drop\n1 ffffffffffffffff\n2 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseConntrackStat(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if st.CPUs < 1 {
			t.Fatalf("success with %d CPU rows", st.CPUs)
		}
		// Rebuild the file from the result as one row carrying the sums
		// (plus CPUs-1 zero rows): parsing it must give the same sums.
		var names []string
		for k := range st.Sums {
			names = append(names, k)
		}
		var buf bytes.Buffer
		header := names
		if st.Entries != nil {
			header = append([]string{"entries"}, names...)
		}
		buf.WriteString(strings.Join(header, " ") + "\n")
		for row := 0; row < st.CPUs; row++ {
			var vals []string
			if st.Entries != nil {
				vals = append(vals, strconv.FormatUint(*st.Entries, 16))
			}
			for _, k := range names {
				v := uint64(0)
				if row == 0 {
					v = st.Sums[k]
				}
				vals = append(vals, strconv.FormatUint(v, 16))
			}
			buf.WriteString(strings.Join(vals, " ") + "\n")
		}
		if len(header) == 0 {
			return // a header of no columns cannot be written back
		}
		again, err := ParseConntrackStat(&buf)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", buf.String(), err)
		}
		if again.CPUs != st.CPUs || len(again.Sums) != len(st.Sums) {
			t.Fatalf("round trip: %+v vs %+v", again, st)
		}
		for k, v := range st.Sums {
			if again.Sums[k] != v {
				t.Fatalf("round trip %s: %d vs %d", k, again.Sums[k], v)
			}
		}
	})
}
