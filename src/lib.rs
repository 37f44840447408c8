//! Ostiary: a standalone OAuth 2.0 and OpenID Connect authorization server serving identity domains.

pub mod admin;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod http;
pub mod jwks_cache;
pub mod keyring;
pub mod oauth;
pub mod reconcile;
pub mod store;
pub mod tls;
pub mod views;
