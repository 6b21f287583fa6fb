// Package report turns a storm capture written by `stormguard watch
// --journal DIR` into a self-contained postmortem: a timeline of state
// changes, charts (SVG drawn with gonum/plot, inlined so the HTML file needs
// nothing else), the detector's verdict and evidence, and recommended next
// steps. The samples are replayed through the detector, so rates and
// occupancies in the report are computed exactly as the agent computed
// them live.
package report
