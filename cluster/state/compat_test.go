package state

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// update rewrites the compatibility testdata from today's code:
// go test ./cluster/state -run TestCompat -update. Do it only when a new
// format version starts: the files of older versions stay, and every
// later version must go on reading them.
var update = flag.Bool("update", false, "write the compatibility testdata of this version (testdata/compat)")

// compatDir holds, per snapshot format version, log entries written by
// that version and the snapshot it wrote after applying them.
const compatDir = "testdata/compat"

// compatEntries is a log that a version of today writes: every command
// type, with keys and audit records, as the nodes and the API send them.
func compatEntries(t testing.TB) [][]byte {
	name, role, exp := "renamed", RoleAdmin, int64(9000)
	rec := func(action string) *AuditRecord {
		return &AuditRecord{Time: 1700000000000, Actor: "admin", Action: action, Target: "t", Source: "127.0.0.1"}
	}
	cmds := []Command{
		{Type: TypeNoop},
		{Type: TypeRegisterNode, Body: RegisterNode{Time: 10, Node: Node{ID: "n1", HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:7000",
			DeclaredLabels: map[string]string{"zone": "a"}, GPUs: []GPU{{Index: 0, Model: "NVIDIA A100", MemoryBytes: 80 << 30, UUID: "GPU-1"}},
			Version: "0.1.0", CommandLevel: LegacyLevel, Models: []string{"llama3.2:1b"}}}},
		{Type: TypeRegisterNode, Body: RegisterNode{Time: 11, Node: Node{ID: "n2", HTTPAddr: "10.0.0.2:8080", RaftAddr: "10.0.0.2:7000"}}},
		{Type: TypeSetClusterCA, Body: SetClusterCA{CA: ClusterCA{Cert: "-----BEGIN CERTIFICATE-----", Key: "-----BEGIN EC PRIVATE KEY-----"}}},
		{Type: TypeSetNodeLabels, Body: SetNodeLabels{ID: "n1", Labels: map[string]string{"jurisdiction": "EU"}}, Audit: rec("set-node-labels")},
		{Type: TypeSetNodeStatus, Body: SetNodeStatus{ID: "n2", Status: NodeCordoned, Reason: "maintenance", Time: 12}},
		{Type: TypeRegisterModel, Flags: FlagIgnorable, Key: "model-1", Body: RegisterModel{Model: filledSpec("acme/m2:7b"), Create: true}},
		{Type: TypeRegisterModel, Body: RegisterModel{Model: tinySpec("tiny:latest")}},
		{Type: TypeUnregisterModel, Flags: FlagIgnorable, Body: UnregisterModel{Name: "tiny:latest"}},
		{Type: TypePutDeployment, Key: "dep-1", Body: PutDeployment{Create: true, Time: 13, Deployment: Deployment{Name: "chat", Model: "llama3.2:1b",
			Replicas: 2, Constraints: []string{"jurisdiction=EU"}, Priority: 5, SpreadBy: "zone", IdleTimeout: 600}}, Audit: rec("create-deployment")},
		{Type: TypePutDeployment, Body: PutDeployment{Time: 14, Deployment: Deployment{Name: "gone", Model: "m", Replicas: 1}}},
		{Type: TypeDeleteDeployment, Body: DeleteDeployment{Name: "gone"}},
		{Type: TypeSetPlacements, Body: SetPlacements{Deployments: map[string][]string{"chat": {"n1", "n2"}}}},
		{Type: TypeReportPlacement, Body: ReportPlacement{Deployment: "chat", Node: "n1", State: PlacementPulling, Progress: 0.25, BytesDone: 1, BytesTotal: 4}},
		{Type: TypeReportPlacement, Body: ReportPlacement{Deployment: "chat", Node: "n2", State: PlacementReady}},
		{Type: TypeTouchDeployment, Flags: FlagIgnorable, Body: TouchDeployment{Name: "chat", Time: 20}},
		{Type: TypeSetDeploymentIdle, Flags: FlagIgnorable, Body: SetDeploymentIdle{Name: "chat", Idle: true, Time: 30, UnusedSince: 20}},
		{Type: TypeSetDeploymentIdle, Flags: FlagIgnorable, Body: SetDeploymentIdle{Name: "chat", Idle: false, Time: 31}},
		{Type: TypePutAPIKey, Body: PutAPIKey{Key: APIKey{ID: "k1", Name: "ci", Role: RoleInference, Hash: "hash-1", Prefix: "sk-sovra-k1",
			Models: []string{"chat"}, Jurisdictions: []string{"EU"}, Limits: Limits{RequestsPerMinute: 60}, Labels: map[string]string{"team": "a"},
			Expires: 5000, Created: 100}}, Audit: rec("create-key")},
		{Type: TypePutAPIKey, Body: PutAPIKey{Key: APIKey{ID: "k2", Role: RoleInference, Hash: "hash-2", Created: 101}}},
		{Type: TypeUpdateAPIKey, Body: UpdateAPIKey{ID: "k1", Name: &name, Role: &role, Expires: &exp, Time: 102}},
		{Type: TypeRotateAPIKey, Body: RotateAPIKey{ID: "k1", Hash: "hash-3", Prefix: "sk-sovra-k3", GraceUntil: 200, Time: 103}},
		{Type: TypeDeleteAPIKey, Body: DeleteAPIKey{ID: "k2"}},
		{Type: TypeTouchAPIKeys, Flags: FlagIgnorable, Body: TouchAPIKeys{Node: "n1", Times: map[string]int64{"k1": 150}}},
		{Type: TypeAppendAudit, Body: AppendAudit{Records: []AuditRecord{*rec("join"), *rec("remove")}}},
		{Type: TypeTrimAudit, Body: TrimAudit{Before: 2}},
		{Type: TypeRecordUsage, Flags: FlagIgnorable, Body: RecordUsage{Node: "n1", Batch: 7, Buckets: []UsageTotal{
			{Start: 3600, Hours: 1, Key: "k1", Model: "chat", Node: "n1", Requests: 3, Errors: 1, PromptTokens: 30, CompletionTokens: 60, TTFTMs: 90, TTFTCount: 3},
			{Start: 7200, Hours: 1, Key: "k1", Model: "chat", Node: "n1", Requests: 1, PromptTokens: 5, CompletionTokens: 5}}}},
		{Type: TypeRecordEnergy, Flags: FlagIgnorable, Body: RecordEnergy{Node: "n1", Batch: 3, Buckets: []EnergyTotal{
			{Start: 0, Hours: 1, Model: "llama3.2:1b", Node: "n1", MilliJoules: 9000000, EstimatedMilliJoules: 1000000, OutputTokens: 1500},
			{Start: 7200, Hours: 1, Model: "llama3.2:1b", Node: "n1", MilliJoules: 2000, OutputTokens: 4}}}},
		{Type: TypeRollupUsage, Body: RollupUsage{Before: 7200}},
		{Type: TypeRemoveNode, Key: "remove-1", Body: RemoveNode{ID: "n9"}},
	}
	var out [][]byte
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestCompatCoversEveryType: the log above holds a command of every type
// this version knows, so a later version that cannot apply one fails
// TestCompat.
func TestCompatCoversEveryType(t *testing.T) {
	seen := map[Type]bool{}
	for _, e := range compatEntries(t) {
		seen[Type(e[0])] = true
	}
	for typ := Type(0); typ <= builtinLevel; typ++ {
		if !seen[typ] {
			t.Errorf("compatEntries has no %v command", typ)
		}
	}
}

// TestCompat replays each version's log and reads its snapshot with
// today's code: the state must come out exactly as that version wrote it.
// A change that breaks reading an older snapshot, or applying an older
// log the same way, fails here.
func TestCompat(t *testing.T) {
	if *update {
		writeCompat(t, snapshotVersion)
	}
	dirs, err := filepath.Glob(filepath.Join(compatDir, "v*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no compatibility testdata under %s (%v); write it with -update", compatDir, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			replayed := replay(t, readEntries(t, filepath.Join(dir, "entries.txt")))
			raw, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
			if err != nil {
				t.Fatal(err)
			}
			restored, err := Decode(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("today's decoder refuses the snapshot %s wrote: %v", filepath.Base(dir), err)
			}
			if !reflect.DeepEqual(restored, replayed) {
				t.Fatalf("the snapshot restores another state than its log replays to:\nrestored %s\nreplayed %s",
					snapshot(t, restored), snapshot(t, replayed))
			}
			if err := checkInvariants(restored); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// replay applies a log to an empty state; every entry must apply.
func replay(t *testing.T, entries [][]byte) *State {
	t.Helper()
	s := New()
	for i, e := range entries {
		out, err := s.ApplyOrReject(uint64(i+1), e)
		if err != nil || errors.Is(out.Err(), ErrRejected) || out.Skipped {
			t.Fatalf("entry %d (%v) does not apply: %v %+v", i+1, Type(e[0]), err, out)
		}
	}
	return s
}

// writeCompat writes this version's log and snapshot.
func writeCompat(t *testing.T, version int) {
	dir := filepath.Join(compatDir, fmt.Sprintf("v%d", version))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries := compatEntries(t)
	var lines strings.Builder
	for _, e := range entries {
		lines.WriteString(base64.StdEncoding.EncodeToString(e) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "entries.txt"), []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshot.json"), snapshot(t, replay(t, entries)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readEntries(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b, err := base64.StdEncoding.DecodeString(sc.Text())
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDecodeRefusesNewerVersions: a snapshot of a newer format, or holding
// commands this version does not know, is refused with ErrNewerVersion
// and says so, rather than read in part.
func TestDecodeRefusesNewerVersions(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{name: "newer format", in: fmt.Sprintf(`{"version":%d,"state":{}}`, snapshotVersion+1),
			want: fmt.Sprintf("format version %d, and this version of sovra reads formats up to %d", snapshotVersion+1, snapshotVersion)},
		{name: "newer format, state this version cannot parse", in: fmt.Sprintf(`{"version":%d,"state":{"nodes":[1]}}`, snapshotVersion+1),
			want: "format version"},
		{name: "newer commands", in: fmt.Sprintf(`{"version":%d,"state":{"command_level":%d}}`, snapshotVersion, Level()+1),
			want: fmt.Sprintf("holds commands up to type %d, and this version of sovra knows types up to %d", Level()+1, Level())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Decode(strings.NewReader(tc.in))
			if !errors.Is(err, ErrNewerVersion) || errors.Is(err, ErrCorrupt) || s != nil {
				t.Fatalf("Decode = %v, %v; want ErrNewerVersion alone", s, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	in := fmt.Sprintf(`{"version":%d,"state":{"command_level":%d}}`, snapshotVersion, Level())
	if _, err := Decode(strings.NewReader(in)); err != nil {
		t.Fatalf("a state at this version's level is refused: %v", err)
	}
}

// TestCommandLevelRises: a command older versions may not skip raises the
// state's level to its type when it applies; a failed or ignorable one
// does not.
func TestCommandLevelRises(t *testing.T) {
	a := newApplier(t)
	a.node("n1")
	if a.s.CommandLevel != TypeRegisterNode {
		t.Fatalf("level %d after register-node", a.s.CommandLevel)
	}
	a.do(TypeDeleteDeployment, DeleteDeployment{Name: "none"}) // fails: not found
	if a.s.CommandLevel != TypeRegisterNode {
		t.Fatalf("a failed command raised the level to %d", a.s.CommandLevel)
	}
	a.raw(entryKeyed(t, TypeRecordUsage, FlagIgnorable, "", RecordUsage{Node: "n1", Batch: 1}))
	a.raw(entryKeyed(t, Type(200), FlagIgnorable, "", nil))
	if a.s.CommandLevel != TypeRegisterNode {
		t.Fatalf("an ignorable command raised the level to %d", a.s.CommandLevel)
	}
	a.ok(TypeSetNodeLabels, SetNodeLabels{ID: "n1", Labels: map[string]string{"a": "b"}})
	a.ok(TypeSetNodeStatus, SetNodeStatus{ID: "n1", Status: NodeCordoned})
	if a.s.CommandLevel != TypeSetNodeLabels {
		t.Fatalf("level %d, want %d: it never goes down", a.s.CommandLevel, TypeSetNodeLabels)
	}
}

// TestLevelOf: a node that reports no level is taken to know the types
// every version knew before levels.
func TestLevelOf(t *testing.T) {
	if got := LevelOf(&Node{}); got != LegacyLevel {
		t.Fatalf("LevelOf(no level) = %d", got)
	}
	if got := LevelOf(nil); got != LegacyLevel {
		t.Fatalf("LevelOf(nil) = %d", got)
	}
	if got := LevelOf(&Node{CommandLevel: 40}); got != 40 {
		t.Fatalf("LevelOf(40) = %d", got)
	}
	if Level() < LegacyLevel {
		t.Fatalf("Level() %d below LegacyLevel %d", Level(), LegacyLevel)
	}
}

// TestNeedsLevel: what the leader's version gate asks of the members for
// an entry.
func TestNeedsLevel(t *testing.T) {
	rec := &AuditRecord{Actor: "admin", Action: "x"}
	cases := []struct {
		name string
		cmd  Command
		want Type
	}{
		{name: "plain", cmd: Command{Type: 30, Body: 1}, want: 30},
		{name: "ignorable", cmd: Command{Type: 30, Flags: FlagIgnorable, Body: 1}, want: 0},
		{name: "ignorable with a key", cmd: Command{Type: 30, Flags: FlagIgnorable, Key: "k", Body: 1}, want: 30},
		{name: "ignorable with an audit record", cmd: Command{Type: 30, Flags: FlagIgnorable, Audit: rec, Body: 1}, want: 30},
		{name: "old type", cmd: Command{Type: TypeRemoveNode, Body: RemoveNode{ID: "n"}}, want: TypeRemoveNode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Encode(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := NeedsLevel(e); err != nil || got != tc.want {
				t.Fatalf("NeedsLevel = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	if _, err := NeedsLevel([]byte{1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("NeedsLevel(corrupt) = %v", err)
	}
}
