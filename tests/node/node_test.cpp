#include "node_test.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <thread>

namespace crisd::node {

Result sh(const std::string& command) {
    Result r;
    const std::string full = "exec 2>&1; " + command;
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int status = ::pclose(p);
    if (WIFEXITED(status))
        r.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r.exit_code = 128 + WTERMSIG(status);
    return r;
}

std::string must(const std::string& command) {
    auto r = sh(command);
    if (r.exit_code != 0)
        ADD_FAILURE() << "`" << command << "` exited " << r.exit_code << ":\n" << r.out;
    return r.out;
}

std::string unit_property(const std::string& unit, const std::string& property) {
    auto out = sh("systemctl show -p " + property + " --value " + quote(unit)).out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

bool wait_unit_state(const std::string& unit, const std::string& state, int seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    do {
        auto out = sh("systemctl is-active " + quote(unit)).out;
        if (out.rfind(state, 0) == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (std::chrono::steady_clock::now() < end);
    return false;
}

std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

}  // namespace crisd::node
