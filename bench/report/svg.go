package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Series is a named list of values, one per group.
type Series struct {
	Name   string
	Values []float64
}

// BarChart is a grouped bar chart.
type BarChart struct {
	Title  string
	YLabel string
	Groups []string
	Series []Series
	Log    bool // logarithmic y axis
	Format func(float64) string
}

const (
	cw, ch       = 760, 420
	padL, padR   = 80, 160
	padT, padB   = 50, 60
	plotW, plotH = cw - padL - padR, ch - padT - padB
	svgHead      = `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">` + "\n"
)

func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func defFmt(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case math.Abs(v) >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

// SVG renders the chart.
func (c BarChart) SVG() []byte {
	f := c.Format
	if f == nil {
		f = defFmt
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, svgHead, cw, ch, cw, ch)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", padL, esc(c.Title))
	maxV, minPos := 0.0, math.Inf(1)
	for _, s := range c.Series {
		for _, v := range s.Values {
			if v > maxV {
				maxV = v
			}
			if v > 0 && v < minPos {
				minPos = v
			}
		}
	}
	var y func(v float64) float64
	var ticks []float64
	if c.Log && maxV > 0 {
		lo := math.Pow(10, math.Floor(math.Log10(minPos)))
		hi := math.Pow(10, math.Ceil(math.Log10(maxV)))
		if hi <= lo {
			hi = lo * 10
		}
		y = func(v float64) float64 {
			if v <= lo {
				return padT + plotH
			}
			return padT + plotH - plotH*math.Log10(v/lo)/math.Log10(hi/lo)
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		top := niceMax(maxV)
		y = func(v float64) float64 { return padT + plotH - plotH*v/top }
		for i := 0; i <= 5; i++ {
			ticks = append(ticks, top*float64(i)/5)
		}
	}
	// axes + grid
	for _, t := range ticks {
		yy := y(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", padL, yy, padL+plotW, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, yy+4, esc(f(t)))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", padL, padT+plotH, padL+plotW, padT+plotH)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", padL, padT, padL, padT+plotH)
	fmt.Fprintf(&b, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+plotH/2, esc(c.YLabel))
	ng := len(c.Groups)
	ns := len(c.Series)
	if ng > 0 && ns > 0 {
		gw := float64(plotW) / float64(ng)
		bw := gw * 0.8 / float64(ns)
		for gi, g := range c.Groups {
			gx := padL + gw*float64(gi)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", gx+gw/2, padT+plotH+18, esc(g))
			for si, s := range c.Series {
				if gi >= len(s.Values) {
					continue
				}
				v := s.Values[gi]
				x := gx + gw*0.1 + bw*float64(si)
				yy := y(v)
				h := float64(padT+plotH) - yy
				if h < 0 || math.IsNaN(h) {
					h = 0
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
					x, float64(padT+plotH)-h, bw*0.95, h, palette[si%len(palette)], esc(s.Name), esc(g), esc(f(v)))
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", x+bw*0.47, float64(padT+plotH)-h-3, esc(f(v)))
			}
		}
	}
	legend(&b, names(c.Series))
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func names(ss []Series) []string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return n
}

func legend(b *bytes.Buffer, ns []string) {
	for i, n := range ns {
		yy := padT + 10 + i*20
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", padL+plotW+16, yy-10, palette[i%len(palette)])
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", padL+plotW+34, yy, esc(n))
	}
}

// XYSeries is a polyline.
type XYSeries struct {
	Name string
	X, Y []float64
}

// LineChart plots XY series on linear axes.
type LineChart struct {
	Title, XLabel, YLabel string
	Series                []XYSeries
	FormatX, FormatY      func(float64) string
}

// SVG renders the chart.
func (c LineChart) SVG() []byte {
	fx, fy := c.FormatX, c.FormatY
	if fx == nil {
		fx = defFmt
	}
	if fy == nil {
		fy = defFmt
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, svgHead, cw, ch, cw, ch)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", padL, esc(c.Title))
	mx, my := 0.0, 0.0
	for _, s := range c.Series {
		for i := range s.X {
			mx = math.Max(mx, s.X[i])
			my = math.Max(my, s.Y[i])
		}
	}
	mx, my = niceMax(mx), niceMax(my)
	px := func(v float64) float64 { return padL + plotW*v/mx }
	py := func(v float64) float64 { return padT + plotH - plotH*v/my }
	for i := 0; i <= 5; i++ {
		tx, ty := mx*float64(i)/5, my*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", padL, py(ty), padL+plotW, py(ty))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, py(ty)+4, esc(fy(ty)))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(tx), padT+plotH+18, esc(fx(tx)))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", padL, padT+plotH, padL+plotW, padT+plotH)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", padL, padT, padL, padT+plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, ch-16, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+plotH/2, esc(c.YLabel))
	var ns []string
	for si, s := range c.Series {
		ns = append(ns, s.Name)
		var pts []string
		for i := range s.X {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[i]), py(s.Y[i])))
		}
		col := palette[si%len(palette)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		for i := range s.X {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				px(s.X[i]), py(s.Y[i]), col, esc(s.Name), esc(fx(s.X[i])), esc(fy(s.Y[i])))
		}
	}
	legend(&b, ns)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func msFmt(v float64) string { return defFmt(v) + "ms" }

// Charts writes the standard charts for a set of results into dir and
// returns the file names written.
func Charts(dir string, rs []Result) ([]string, error) {
	var written []string
	write := func(name string, svg []byte) error {
		written = append(written, name)
		return os.WriteFile(filepath.Join(dir, name), svg, 0o644)
	}
	byScen := map[string][]Result{}
	for _, r := range rs {
		if r.Status == "ok" || r.Status == "" {
			byScen[r.Scenario] = append(byScen[r.Scenario], r)
		}
	}
	scen := make([]string, 0, len(byScen))
	for s := range byScen {
		scen = append(scen, s)
	}
	sort.Strings(scen)
	for _, s := range scen {
		list := byScen[s]
		// latency percentiles per target
		var lat []Series
		for _, r := range list {
			l := r.Latency
			if s == "connect" {
				l = r.ConnectLatency
			}
			if s == "reconnect" {
				l = r.ReconnectLatency
			}
			if l == nil || l.Count == 0 {
				continue
			}
			lat = append(lat, Series{Name: r.Target, Values: []float64{float64(l.P50) / 1e6, float64(l.P99) / 1e6, float64(l.P999) / 1e6, float64(l.Max) / 1e6}})
		}
		if len(lat) > 0 {
			if err := write("latency-"+s+".svg", BarChart{Title: s + ": latency percentiles", YLabel: "ms (log scale)",
				Groups: []string{"p50", "p99", "p99.9", "max"}, Series: lat, Log: true, Format: msFmt}.SVG()); err != nil {
				return written, err
			}
		}
		// throughput per target
		var tp []float64
		var tn []string
		label := ""
		for _, r := range list {
			var v float64
			switch s {
			case "connect":
				v, label = r.UpgradesPerSec, "upgrades/s"
			case "idle":
				v, label = r.BytesPerConn, "server bytes per idle connection"
			case "reconnect":
				v, label = r.ReconnectAllMs, "ms until all clients are back"
			default:
				v, label = r.DeliveriesPerSec, "messages received per second"
			}
			tp = append(tp, v)
			tn = append(tn, r.Target)
		}
		if len(tp) > 0 {
			var ser []Series
			for i := range tp {
				ser = append(ser, Series{Name: tn[i], Values: []float64{tp[i]}})
			}
			if err := write("throughput-"+s+".svg", BarChart{Title: s + ": " + label, YLabel: label, Groups: []string{s}, Series: ser}.SVG()); err != nil {
				return written, err
			}
		}
		if s == "idle" {
			var xy []XYSeries
			for _, r := range list {
				ser := XYSeries{Name: fmt.Sprintf("%s (%s/conn)", r.Target, Bytes(r.BytesPerConn))}
				for _, p := range r.IdleSamples {
					ser.X = append(ser.X, float64(p.Conns))
					ser.Y = append(ser.Y, float64(p.ServerRSS)/(1<<20))
				}
				xy = append(xy, ser)
			}
			if err := write("rss-idle.svg", LineChart{Title: "server RSS vs idle connections", XLabel: "connections",
				YLabel: "RSS MiB", Series: xy}.SVG()); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}
