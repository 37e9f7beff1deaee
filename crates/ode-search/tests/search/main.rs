//! ode-search's integration tests, one module per concern, in one test binary: one link
//! instead of eight, and tests of different modules run side by side (`cargo test -p
//! ode-search --test search sqlite` runs one module).

mod recovery;

mod driver;
mod leases;
mod pool;
mod postgres;
mod postgres_tls;
mod space;
mod sqlite;
mod trial_tracker;
