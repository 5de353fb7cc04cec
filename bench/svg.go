package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// svg draws the warm path's headline ratios to direct (higher is better;
// latency as direct/proxy) as grouped bars for dynapm and haproxy, with a
// line at 1.0 (as fast as direct).
func (r *report) svg() string {
	var groups []warmRow
	for _, w := range r.warm {
		if w.chart != "" {
			groups = append(groups, w)
		}
	}
	const (
		width, height         = 720, 360
		left, right, top, bot = 60, 20, 40, 60
		barW                  = 36
	)
	top1 := 1.2
	for _, g := range groups {
		for _, t := range []string{dynapm, haproxy} {
			if v := g.speedRatio(t); !math.IsNaN(v) {
				top1 = math.Max(top1, v*1.1)
			}
		}
	}
	plotH := float64(height - top - bot)
	y := func(v float64) float64 { return float64(top) + plotH*(1-v/top1) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">Warm path: ratio to a direct connection (higher is better)</text>`+"\n", left)
	for v := 0.0; v <= top1+1e-9; v += 0.25 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n",
			left, width-right, y(v), y(v), left-6, y(v)+4, v)
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333" stroke-dasharray="4 3"/><text x="%d" y="%.1f" fill="#333">direct = 1.00</text>`+"\n",
		left, width-right, y(1), y(1), width-right-90, y(1)-4)
	colors := map[string]string{dynapm: "#2a7ab9", haproxy: "#e08a2c"}
	if len(groups) > 0 {
		slot := float64(width-left-right) / float64(len(groups))
		for i, g := range groups {
			x0 := float64(left) + slot*float64(i) + slot/2 - barW
			for j, t := range []string{dynapm, haproxy} {
				v := g.speedRatio(t)
				if math.IsNaN(v) {
					continue
				}
				x := x0 + float64(j*barW)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"/><text x="%.1f" y="%.1f" text-anchor="middle">%.2f</text>`+"\n",
					x, y(v), barW-4, y(0)-y(v), colors[t], x+float64(barW-4)/2, y(v)-4, v)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
				float64(left)+slot*float64(i)+slot/2, height-bot+18, html.EscapeString(g.chart))
		}
	}
	for j, t := range []string{dynapm, haproxy} {
		x := left + j*120
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, height-22, colors[t], x+20, height-11, t)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
