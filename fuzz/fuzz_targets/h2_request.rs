//! HTTP/2 requests turned into the HTTP/1.1 head the request path reads: see
//! strata_lb::fuzz::h2_request for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_lb::fuzz::h2_request(data));
