// Package memory keeps DynaPM's apps from running the machine out of memory.
//
// It reads the machine's state from /proc (MemAvailable, each running app's
// whole process tree RSS, memory pressure stall information where the kernel
// offers it), takes the figure an app's instances report themselves where
// they do (a container's, from the engine: Reporter), decides with a pure policy which apps to stop and in what order,
// and a Monitor applies those decisions at an interval. The policy never stops
// an always app; it prefers apps without open connections, with a lower
// memory_priority and least recently active, and stops apps with open
// connections only as a last resort.
//
// The package knows nothing of the lifecycle manager: the Monitor drives the
// small Apps interface, which the manager satisfies.
package memory
