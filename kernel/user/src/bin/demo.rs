//! `demo`: placeholder.
#![no_std]
#![no_main]
user::entry!(main);
fn main() -> i32 {
    0
}
