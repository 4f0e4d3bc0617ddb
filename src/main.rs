fn main() {
    std::process::exit(attnframes::main_with_args(std::env::args_os()));
}
