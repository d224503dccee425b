// Command verify_with_go checks a Keyglass log's answers with Go's golang.org/x/mod/sumdb
// packages, which know nothing of Keyglass: the checkpoint signature with sumdb/note, inclusion
// proofs with tlog.CheckRecord and a consistency proof with tlog.CheckTree.
//
// Input: a JSON fixture written by Tests/KeyglassServerTests/GoInteropTests.swift. Prints "ok" and
// exits 0 when everything verifies; exits 1 with the reason otherwise.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type fixture struct {
	VerifierKey   string   `json:"verifier_key"`
	Checkpoint    string   `json:"checkpoint"`
	OldCheckpoint string   `json:"old_checkpoint"`
	Consistency   []string `json:"consistency"`
	Entries       []struct {
		Index int64    `json:"index"`
		Entry string   `json:"entry"`
		Proof []string `json:"proof"`
	} `json:"entries"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			fail("bad hash %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

// open verifies a checkpoint note with sumdb/note and parses origin, size and root.
func open(msg string, verifier note.Verifier) (int64, tlog.Hash) {
	n, err := note.Open([]byte(msg), note.VerifierList(verifier))
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint origin %q does not match key name %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("bad size: %v", err)
	}
	return size, hashes([]string{lines[2]})[0]
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		fail("fixture: %v", err)
	}
	verifier, err := note.NewVerifier(f.VerifierKey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	size, root := open(f.Checkpoint, verifier)
	for _, e := range f.Entries {
		data, err := base64.StdEncoding.DecodeString(e.Entry)
		if err != nil {
			fail("entry %d: %v", e.Index, err)
		}
		if err := tlog.CheckRecord(tlog.RecordProof(hashes(e.Proof)), size, root, e.Index, tlog.RecordHash(data)); err != nil {
			fail("tlog.CheckRecord entry %d: %v", e.Index, err)
		}
	}
	oldSize, oldRoot := open(f.OldCheckpoint, verifier)
	if err := tlog.CheckTree(tlog.TreeProof(hashes(f.Consistency)), size, root, oldSize, oldRoot); err != nil {
		fail("tlog.CheckTree %d -> %d: %v", oldSize, size, err)
	}
	fmt.Printf("ok: %d inclusion proofs and consistency %d -> %d verified by golang.org/x/mod/sumdb\n", len(f.Entries), oldSize, size)
}
