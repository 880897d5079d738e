package emulator_test

import (
	"strings"
	"testing"

	"github.com/relaygate/relaygate/internal/emulator"
	"github.com/relaygate/relaygate/internal/testlog"
)

func TestParseRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    emulator.Rule
		wantErr string
	}{
		{"Root=abc+/=", emulator.Rule{Name: "Root", Key: "abc+/=", Rights: emulator.RightManage}, ""},
		{"snd=K1:Send", emulator.Rule{Name: "snd", Key: "K1", Rights: emulator.RightSend}, ""},
		{"both=K1:listen, SEND", emulator.Rule{Name: "both", Key: "K1", Rights: emulator.RightListen | emulator.RightSend}, ""},
		{"hc1/lst=K2:Listen", emulator.Rule{Name: "lst", Key: "K2", Rights: emulator.RightListen, Entity: "hc1"}, ""},
		{"team/hc1/lst=K2", emulator.Rule{Name: "lst", Key: "K2", Rights: emulator.RightManage, Entity: "team/hc1"}, ""},
		{"colon=k:ey:Manage", emulator.Rule{Name: "colon", Key: "k:ey", Rights: emulator.RightManage}, ""},
		{"nokey", emulator.Rule{}, "NAME=KEY"},
		{"=secretvalue", emulator.Rule{}, "rule name is empty"},
		{"n=", emulator.Rule{}, "key is empty"},
		{"n=secretvalue:Admin", emulator.Rule{}, "unknown right"},
		{"n=secret:value", emulator.Rule{}, "unknown right"},
		{"n=:Send", emulator.Rule{}, "key is empty"},
		{"/n=secretvalue", emulator.Rule{}, "empty entity"},
		{"n m=secretvalue", emulator.Rule{}, "white space"},
		{"n=secret value", emulator.Rule{}, "white space"},
		{"n=secretvalue:", emulator.Rule{}, "no rights"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := emulator.ParseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error echoes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			if strings.Contains(got.String(), got.Key) || strings.Contains(got.GoString(), got.Key) {
				t.Errorf("String shows the key: %s", got)
			}
		})
	}
}

func TestParseEntity(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    emulator.Entity
		wantErr bool
	}{
		{"hc1", emulator.Entity{Name: "hc1", RequiresClientAuthorization: true}, false},
		{"hc1:anonymous", emulator.Entity{Name: "hc1"}, false},
		{"team/hc1", emulator.Entity{Name: "team/hc1", RequiresClientAuthorization: true}, false},
		{"hc1:bogus", emulator.Entity{}, true},
		{"", emulator.Entity{}, true},
		{"$hc", emulator.Entity{}, true},
		{"a b", emulator.Entity{}, true},
	} {
		got, err := emulator.ParseEntity(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseEntity(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"Root=abc", "a/b=k:Listen,Send", "x=k:ey:Manage", "=", ":", "a/=k", "n=k:,", "ü=ß:send"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := emulator.ParseRule(s)
		if err != nil {
			if name, key, ok := strings.Cut(s, "="); ok && len(key) >= 12 {
				// Not counted: the key's text also in the name or the
				// message (then it is there with another key too).
				_, other := emulator.ParseRule(name + "=" + testlog.Scramble(key))
				otherText := ""
				if other != nil {
					otherText = other.Error()
				}
				if testlog.Echoes(key, err.Error(), otherText) {
					t.Fatalf("error echoes the key: %v", err)
				}
			}
			return
		}
		if r.Name == "" || r.Key == "" || r.Rights == 0 {
			t.Fatalf("accepted an incomplete rule %#v from %q", r, s)
		}
		// Round trip through the documented syntax.
		txt := r.Name + "=" + r.Key + ":" + r.Rights.String()
		if r.Entity != "" {
			txt = r.Entity + "/" + txt
		}
		r2, err := emulator.ParseRule(txt)
		if err != nil || r2 != r {
			t.Fatalf("round trip %q: %#v, %v; want %#v", txt, r2, err, r)
		}
	})
}
