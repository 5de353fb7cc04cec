package appfile

import (
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// tomlErrorLine finds the line of a TOML error that go-toml reports
// without a position (a key or table defined twice, a key used as a table
// and a value): the first expression whose addition to the document makes
// it fail with msg. 0 when none does. Run only on a file already refused.
func tomlErrorLine(data []byte, msg string) int {
	var p unstable.Parser
	p.Reset(data)
	var starts []unstable.Position
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue && e.Kind != unstable.Table && e.Kind != unstable.ArrayTable {
			continue
		}
		k := e.Key()
		if !k.Next() {
			continue
		}
		starts = append(starts, p.Shape(k.Node().Raw).Start)
	}
	for i, start := range starts {
		end := len(data)
		if i+1 < len(starts) {
			end = starts[i+1].Offset
		}
		var raw map[string]any
		if err := toml.Unmarshal(data[:end], &raw); err != nil && err.Error() == msg {
			return start.Line
		}
	}
	return 0
}
