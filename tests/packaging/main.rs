//! The binary as it is shipped: its command line, the systemd unit and its notifications, the
//! Debian package, and the Raspberry Pi builds run under qemu.

mod arm_binaries;
mod cli;
mod debian_package;
mod devices_command;
mod systemd_notify;
mod systemd_unit;
mod systemd_watchdog;
