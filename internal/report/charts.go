package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/stormguard/stormguard/internal/detect"
)

// series is one line on a chart.
type series struct {
	name  string
	color color.Color
	get   func(Point) (float64, bool)
	dash  bool
}

// Chart is a rendered chart.
type Chart struct {
	Title string
	SVG   string
}

var (
	blue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	orange = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	red    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	grey   = color.RGBA{R: 0x66, G: 0x66, B: 0x66, A: 0xff}
	green  = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

func f(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

func uf(p *uint64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return float64(*p), true
}

// Charts renders the report's charts; a chart with no data is left out.
func (a *Analysis) Charts() ([]Chart, error) {
	specs := []struct {
		title, unit string
		lines       []series
	}{
		{"New connections per second", "conn/s", []series{
			{"new connections/s", blue, func(p Point) (float64, bool) { return f(p.View.NewConnRate) }, false},
			{"baseline", grey, func(p Point) (float64, bool) { return f(p.View.NewConnBaseline) }, true},
		}},
		{"Dropped or refused connections per second", "conn/s", []series{
			{"dropped/refused", red, func(p Point) (float64, bool) { return f(p.View.DroppedRate) }, false},
			{"listen overflows", orange, func(p Point) (float64, bool) { return f(p.View.Rates.ListenOverflows) }, true},
		}},
		{"Accept queue (interval peak vs limit)", "connections", []series{
			{"peak depth", blue, func(p Point) (float64, bool) { return uf(p.View.AcceptDepthMax) }, false},
			{"limit", red, func(p Point) (float64, bool) { return uf(p.View.AcceptLimit) }, true},
			{"SYN_RECV", green, func(p Point) (float64, bool) { return uf(p.View.SynRecv) }, false},
		}},
		{"Valkey clients", "clients", []series{
			{"connected", blue, func(p Point) (float64, bool) { return uf(p.View.ConnectedClients) }, false},
			{"maxclients", red, func(p Point) (float64, bool) { return uf(p.View.MaxClients) }, true},
		}},
		{"Conntrack table", "entries", []series{
			{"entries", blue, func(p Point) (float64, bool) { return uf(p.View.ConntrackCount) }, false},
			{"max", red, func(p Point) (float64, bool) { return uf(p.View.ConntrackMax) }, true},
		}},
		{"PING over the reserved connection", "ms", []series{
			{"PING ms", blue, func(p Point) (float64, bool) { return f(p.View.PingMS) }, false},
		}},
	}
	var out []Chart
	for _, sp := range specs {
		if sp.title == "Conntrack table" && a.Peaks.ConntrackCount == 0 {
			continue // nothing tracked: a flat line at 0 against the limit says nothing
		}
		svg, ok, err := a.render(sp.title, sp.unit, sp.lines)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", sp.title, err)
		}
		if ok {
			out = append(out, Chart{Title: sp.title, SVG: svg})
		}
	}
	return out, nil
}

func (a *Analysis) render(title, unit string, lines []series) (string, bool, error) {
	p := plot.New()
	// The figure caption carries the title.
	p.X.Label.Text = "seconds from onset"
	p.Y.Label.Text = unit
	p.Legend.Top = true
	ymax := 0.0
	any := false
	var plotted []plot.Plotter
	for _, s := range lines {
		var xys plotter.XYs
		for _, pt := range a.Points {
			v, ok := s.get(pt)
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: pt.Time.Sub(a.Onset).Seconds(), Y: v})
			ymax = math.Max(ymax, v)
		}
		if len(xys) == 0 {
			continue
		}
		any = true
		l, err := plotter.NewLine(xys)
		if err != nil {
			return "", false, err
		}
		l.Color = s.color
		l.Width = vg.Points(1.5)
		if s.dash {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		plotted = append(plotted, l)
		p.Legend.Add(s.name, l)
	}
	if !any {
		return "", false, nil
	}
	if ymax == 0 {
		ymax = 1
	}
	// Shade surge and storm periods behind the lines.
	for _, band := range a.bands() {
		poly, err := plotter.NewPolygon(plotter.XYs{{X: band.from, Y: 0}, {X: band.to, Y: 0}, {X: band.to, Y: ymax * 1.05}, {X: band.from, Y: ymax * 1.05}})
		if err != nil {
			return "", false, err
		}
		poly.Color = band.color
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	p.Add(plotted...)
	p.Y.Min = 0
	c := vgsvg.New(7*vg.Inch, 2.6*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", false, err
	}
	return stripXMLHeader(buf.String()), true, nil
}

type band struct {
	from, to float64
	color    color.Color
}

// bands are the contiguous surge and storm periods, in seconds from onset.
func (a *Analysis) bands() []band {
	var out []band
	for i := 0; i < len(a.Points); {
		st := a.Points[i].State
		j := i
		for j+1 < len(a.Points) && a.Points[j+1].State == st {
			j++
		}
		var c color.Color
		switch st {
		case detect.Storm:
			c = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x40}
		case detect.Surge:
			c = color.NRGBA{R: 0xe0, G: 0xb0, B: 0x00, A: 0x40}
		}
		if c != nil {
			end := a.Points[j].Time
			if j+1 < len(a.Points) {
				end = a.Points[j+1].Time
			}
			out = append(out, band{a.Points[i].Time.Sub(a.Onset).Seconds(), end.Sub(a.Onset).Seconds(), c})
		}
		i = j + 1
	}
	return out
}

func stripXMLHeader(s string) string {
	if i := bytes.Index([]byte(s), []byte("<svg")); i > 0 {
		return s[i:]
	}
	return s
}
