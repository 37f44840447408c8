//! Integration tests: each test starts the real server on 127.0.0.1:0 (SQLite, or PostgreSQL
//! when OSTIARY_TEST_DATABASE_URL is set) and walks a flow over HTTP as a client would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod admin;
mod assertions;
mod authorize;
mod browser;
mod cli;
mod client_credentials;
mod code_grant;
mod device;
mod discovery;
mod faults;
mod flow;
mod harness;
mod introspection;
mod keys;
mod lockout;
mod logout;
mod migrations;
mod mtls;
mod ops;
mod password;
mod pki;
mod pool;
mod process;
mod refresh;
mod replicas;
mod revocation;
mod seed;
mod sessions;
mod signin;
