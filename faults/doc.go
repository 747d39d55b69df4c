// Package faults is wsgate's fault suite: it runs real gateway processes
// (built from ./cmd/gateway by the tests, without -race), real NATS servers
// in the test process, and gorilla/websocket clients over loopback, and
// checks that the gateway stays dependable when an operator's worst minute
// happens:
//
//   - TestFloodToDescriptorLimit: a TCP flood far past the gateway's
//     open-file limit; the process never exits, a connected client keeps
//     round-tripping, new clients are either served or refused with 503,
//     and the refused connections are counted.
//   - TestServiceBurstFastReceivers: a service burst on NATS well above
//     -max-queue-bytes per receiver; no reading receiver is closed, each
//     gets every message in order.
//   - TestNATSKillRestartAcked: two instances on one NATS server that is
//     killed and restarted under acked room traffic; every acked message
//     reaches every receiver or that receiver was told (gap, 4009), as
//     docs/architecture.md "Delivery guarantee" promises.
//   - TestSlowConsumers: clients that stop reading are closed with 4009,
//     the ones that read get everything, and the gateway's peak RSS stays
//     under the formula in docs/operations.md ("Sizing").
//   - TestChurnReconnectAcrossLoopsAndInstances: users switch connections
//     make-before-break across loops and two instances while remote
//     senders send to them and to their rooms; every acked message reaches
//     one of the user's connections that was open for it (0 lost).
//
// The package holds only tests. Run it with
//
//	make faults-short   # reduced size, part of make test (under a minute)
//	make faults         # full size (FAULTS_SIZE=full)
//
// or go test ./faults directly. Environment:
//
//	FAULTS_SIZE=reduced|full  size of every scenario (default reduced)
//	FAULTS_LOG=1              print the gateway processes' logs
//	FAULTS_GATEWAY_BIN=path   run against this gateway binary instead of
//	                          building ./cmd/gateway (e.g. an older build,
//	                          to see a scenario fail)
package faults
