// Package journal is the agent's flight recorder: an in-memory ring of the
// last minutes of samples at full resolution (bounded memory), an events
// file of JSON lines with size-based rotation, and storm captures — on surge
// or storm, the window from a minute before onset until calm is written to a
// file under the journal directory, which `stormguard report` turns into a
// postmortem.
//
// Disk trouble (full, read-only, removed) never stops sampling: writes fail,
// the failure is counted and logged once per kind, and recording resumes
// when the disk allows.
package journal
