import Foundation
import ServiceLifecycle

/// Runs a service's loop on a thread of its own, as the sequencer, the index follower and the
/// directory's writer do: their loops block (fsyncs, semaphores), which Swift's cooperative pool
/// must never do. Returns when `loop` does; graceful shutdown or cancellation calls `stop`, which
/// must make `loop` finish its work and return.
public enum DedicatedThread {
    public static func run(name: String, loop: @escaping @Sendable () -> Void, stop: @escaping @Sendable () -> Void) async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                    let thread = Thread {
                        loop()
                        finished.resume()
                    }
                    thread.name = name
                    thread.start()
                }
            } onGracefulShutdown: {
                stop()
            }
        } onCancel: {
            stop()
        }
    }
}
