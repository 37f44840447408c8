//! Integration tests: each module starts the real server on 127.0.0.1:0 and walks a flow over HTTP.
