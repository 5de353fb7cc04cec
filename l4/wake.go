package l4

import "net/netip"

// wake is the Waker's Wake, with the connection to the upstream a
// ConnWaker hands over (-1 when none).
func (s *Server) wake(app string) (netip.AddrPort, int, func(), error) {
	if cw, ok := s.Waker.(ConnWaker); ok {
		return cw.WakeConn(s.ctx, app)
	}
	up, release, err := s.Waker.Wake(s.ctx, app)
	return up, -1, release, err
}
