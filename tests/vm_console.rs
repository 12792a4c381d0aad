//! The console of the tests' virtual machine (tests/support/vm.rs, tests/vm/init) outlives what
//! the tests do to their processes. Busybox's interactive shell, which read the console before,
//! exited as if at the end of its input when a background process it had started was stopped
//! and continued (most likely its SIGCHLD coming in as the shell read), and PID 1 exiting
//! panics the kernel: the wall-clock hold test lost its VM that way in a CI run. The Pi Zero run skips this (the
//! name holds "kernel"): its VM is x86, as for the other VM tests.

mod support;

use std::path::Path;
use std::time::Duration;

use support::vm::Vm;

/// Stop-and-continue rounds; the interactive shell died within the first two.
const ROUNDS: usize = 100;

#[test]
fn the_kernel_vms_console_outlives_a_background_process_stopped_and_continued() {
    let mut vm = Vm::boot("console", Path::new(env!("CARGO_BIN_EXE_earshot")));
    vm.run("sleep 100000 > /dev/null 2>&1 & echo $! > /tmp/sleep.pid");
    for round in 0..ROUNDS {
        let (output, code) = vm.sh(
            "kill -STOP $(cat /tmp/sleep.pid); kill -CONT $(cat /tmp/sleep.pid)",
            Duration::from_secs(10),
        );
        assert_eq!(code, 0, "round {round}: {output}");
    }
    // And the shell still runs commands.
    assert_eq!(vm.run("echo still here").trim(), "still here");
}
