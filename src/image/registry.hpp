// A client for one repository on one registry (OCI distribution spec) on
// libcurl: manifests and blobs, anonymous / basic / bearer-token auth through
// the WWW-Authenticate challenge, HTTPS (plain HTTP only for insecure
// registries), bounded connect time and a no-progress timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "image/auth.hpp"

namespace crisd::image {

// Bytes of one pull, shared by its transfers: progress logging and the
// no-progress timeout read it.
class PullProgress {
public:
    explicit PullProgress(std::chrono::seconds no_progress_timeout);
    void add_total(std::int64_t bytes) { total_ += bytes; }
    void add_done(std::int64_t bytes);
    std::int64_t done() const { return done_; }
    std::int64_t total() const { return total_; }
    // True once nothing arrived for longer than the timeout (0: never).
    bool stalled() const;
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }
    std::chrono::seconds timeout() const { return timeout_; }

private:
    std::chrono::seconds timeout_;
    std::atomic<std::int64_t> done_{0};
    std::atomic<std::int64_t> total_{0};
    std::atomic<std::int64_t> last_progress_ns_;
    std::atomic<bool> cancelled_{false};
};

struct RegistryOptions {
    std::chrono::seconds connect_timeout{30};
};

struct FetchedManifest {
    std::string body;
    std::string content_type;
    std::string digest;  // sha256 of body
};

class RegistryClient {
public:
    // `host` "127.0.0.1:5000" or "quay.io"; `repository` "library/busybox".
    RegistryClient(std::string host, std::string repository, bool insecure, Credentials creds,
                   RegistryOptions options, PullProgress& progress);
    ~RegistryClient();
    RegistryClient(const RegistryClient&) = delete;
    RegistryClient& operator=(const RegistryClient&) = delete;

    // GET /v2/<repo>/manifests/<tag or digest>. A digest reference is verified.
    FetchedManifest get_manifest(const std::string& tag_or_digest);
    // A small blob (a config) into memory, verified; at most max_size bytes.
    std::string get_blob(const std::string& digest, std::int64_t max_size);
    // A blob streamed into fd, verified against digest and size.
    void get_blob_to_fd(const std::string& digest, std::int64_t size, int fd);

    const std::string& host() const { return host_; }

private:
    struct Response {
        long status = 0;
        std::string content_type;
        std::string www_authenticate;
        std::string body;  // error bodies too (bounded)
    };
    std::string base_url();
    Response perform(const std::string& url, const std::string& accept,
                     std::size_t (*sink)(char*, std::size_t, std::size_t, void*), void* sink_data,
                     const std::string* auth_header = nullptr,
                     const std::string* post_form = nullptr);
    Response get(const std::string& path, const std::string& accept,
                 std::size_t (*sink)(char*, std::size_t, std::size_t, void*), void* sink_data);
    void authenticate(const std::string& challenge);
    [[noreturn]] void fail(const Response& r, const std::string& what);

    std::string host_;
    std::string repository_;
    bool insecure_;
    Credentials creds_;
    RegistryOptions options_;
    PullProgress& progress_;
    std::mutex mu_;
    std::string scheme_;         // "https" or "http", found on first use
    std::string authorization_;  // the Authorization header value once known
};

// Parses `Bearer realm="...",service="...",scope="..."` into its parameters
// (lower-cased keys); the scheme is in "scheme" (lower case).
struct Challenge {
    std::string scheme;
    std::string realm, service, scope;
};
Challenge parse_challenge(const std::string& header);

}  // namespace crisd::image
