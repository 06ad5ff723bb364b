fn main() { shmkit::process::init(); }
