package engine

// benchHandOne is how loop code hands a message to another loop.
func benchHandOne(from, to *Loop, t Task, size int) bool { return from.HandoffBytes(to, t, size) }
