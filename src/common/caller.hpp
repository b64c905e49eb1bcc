// What a service knows of the client whose request it serves, without gRPC
// types: whether the client went away (its call was cancelled) and until when
// it waits (its deadline). A service that waits for something another
// request does (a creation in flight, a pod's lock) waits no longer than
// this, and answers Cancelled or DeadlineExceeded.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "common/error.hpp"

namespace crisd {

struct Caller {
    std::function<bool()> cancelled;  // null: never
    std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();

    bool is_cancelled() const { return cancelled && cancelled(); }
    bool past_deadline() const { return std::chrono::system_clock::now() >= deadline; }
    // The client no longer waits for the answer.
    bool gone() const { return is_cancelled() || past_deadline(); }
    // Throws Cancelled or DeadlineExceeded ("<what>: ...") once the client is gone.
    void check(const std::string& what) const {
        if (is_cancelled()) throw Error(Code::Cancelled, what + ": the client cancelled the request");
        if (past_deadline()) throw Error(Code::DeadlineExceeded, what + ": the request's deadline passed");
    }
};

}  // namespace crisd
