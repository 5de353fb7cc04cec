package l4

// UDPObserver is an Observer that also learns about UDP flows: when the
// Server's Observer implements it, every flow is reported once it ends,
// and every datagram dropped.
type UDPObserver interface {
	// FlowClosed: a UDP flow of app ended; sent bytes went from the client
	// to the app, received bytes back.
	FlowClosed(app string, sent, received int64)
	// DatagramsDropped: n datagrams for app were dropped, either way: the
	// queue of a waking app was full, the app could not be woken, the
	// address had as many flows as it may hold, or the kernel refused a
	// datagram or had no room for it.
	DatagramsDropped(app string, n int)
}

// udpObserver is s.Observer as a UDPObserver, or nil.
func (s *Server) udpObserver() UDPObserver {
	o, _ := s.Observer.(UDPObserver)
	return o
}
