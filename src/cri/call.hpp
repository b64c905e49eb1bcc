// The cross-cutting part of every CRI call, in one place: a request id, a
// debug line with the timing, and the mapping of errors to gRPC statuses by
// their code (never by their text).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <string>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "cri/cri.hpp"

namespace crisd::cri {

grpc::Status to_status(const Error& error);

std::uint64_t next_request_id();

// Unary calls being served right now (the daemon drains them on SIGTERM).
std::atomic<int>& calls_in_flight_counter();

struct InFlight {
    InFlight() { ++calls_in_flight_counter(); }
    ~InFlight() { --calls_in_flight_counter(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
};

template <typename Fn>
grpc::Status call(const char* rpc, Fn&& fn) {
    const InFlight in_flight;
    const auto id = next_request_id();
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status;
    try {
        fn();
    } catch (const Error& e) {
        status = to_status(e);
    } catch (const std::exception& e) {
        status = grpc::Status(grpc::StatusCode::INTERNAL, std::string("crisd: ") + e.what());
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (status.ok()) {
        spdlog::debug("request {} {} ok in {} us", id, rpc, us);
    } else {
        spdlog::log(status.error_code() == grpc::StatusCode::UNIMPLEMENTED ? spdlog::level::debug
                                                                           : spdlog::level::info,
                    "request {} {} failed in {} us: {}", id, rpc, us, status.error_message());
    }
    return status;
}

[[noreturn]] void unimplemented(const char* rpc);

}  // namespace crisd::cri
