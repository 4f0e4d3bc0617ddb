fn main() {
    attnframes::keep_freed_memory();
    attnframes::stop_cleanly_on_interrupt();
    std::process::exit(attnframes::main_with_args(std::env::args_os()));
}
