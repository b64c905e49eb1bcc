// Test helpers for crisd::Error: the code (or Ok) and the message of what a
// call throws, so that a test asserts on the code, never on message text
// alone.
#pragma once

#include <functional>
#include <string>

#include "common/error.hpp"

namespace crisd::test {

// The code of the crisd::Error `fn` throws, Code::Ok when it returns.
inline Code code_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.code();
    }
    return Code::Ok;
}

// The message of the crisd::Error `fn` throws, "" when it returns.
inline std::string message_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

}  // namespace crisd::test
