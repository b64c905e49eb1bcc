#include "image/image.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <semaphore>
#include <set>
#include <thread>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/ids.hpp"
#include "common/fd.hpp"
#include "common/files.hpp"
#include "image/auth.hpp"
#include "image/digest.hpp"
#include "image/manifest.hpp"
#include "image/policy.hpp"
#include "image/reference.hpp"
#include "image/registries.hpp"
#include "image/registry.hpp"
#include "image/unpack.hpp"

namespace crisd::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string random_name(std::size_t n) {
    static thread_local std::mt19937_64 rng(std::random_device{}());
    static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += alphabet[rng() % 36];
    return s;
}

void write_atomic(const std::string& path, const std::string& data) { write_file_atomic(path, data, 0600, true); }

std::string read_text(const std::string& path) { return read_file(path); }

void make_dir(const std::string& p, mode_t mode) {
    if (::mkdir(p.c_str(), mode) != 0 && errno != EEXIST) throw_errno("creating " + p);
}

void remove_tree(const std::string& path) {
    const fs::path p(path);
    UniqueFd parent(::open(p.parent_path().c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (!parent) {
        if (errno == ENOENT) return;
        throw_errno("opening " + p.parent_path().string());
    }
    remove_tree_at(parent.get(), p.filename().string());
}

bool is_hex(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// One image as stored in images/<hex>.json.
struct Record {
    std::string id;
    std::string manifest_digest;
    std::string config_digest;
    std::vector<std::string> repo_tags;
    std::vector<std::string> repo_digests;
    std::vector<Descriptor> layers;
    std::int64_t size = 0;
    std::string user;
    std::int64_t pulled_at_ns = 0;

    json to_json() const {
        json ls = json::array();
        for (const auto& l : layers) ls.push_back({{"digest", l.digest}, {"size", l.size}, {"mediaType", l.media_type}});
        return {{"id", id},           {"manifestDigest", manifest_digest}, {"configDigest", config_digest},
                {"repoTags", repo_tags}, {"repoDigests", repo_digests},   {"layers", ls},
                {"size", size},       {"user", user},                      {"pulledAt", pulled_at_ns}};
    }
    static Record from_json(const json& j) {
        Record r;
        r.id = j.at("id").get<std::string>();
        r.manifest_digest = j.at("manifestDigest").get<std::string>();
        r.config_digest = j.at("configDigest").get<std::string>();
        r.repo_tags = j.at("repoTags").get<std::vector<std::string>>();
        r.repo_digests = j.at("repoDigests").get<std::vector<std::string>>();
        for (const auto& l : j.at("layers"))
            r.layers.push_back(Descriptor{l.at("mediaType").get<std::string>(), l.at("digest").get<std::string>(),
                                          l.at("size").get<std::int64_t>(), {}});
        r.size = j.at("size").get<std::int64_t>();
        r.user = j.value("user", "");
        r.pulled_at_ns = j.value("pulledAt", std::int64_t{0});
        if (!is_sha256_digest(r.id)) throw Error(Code::DataLoss, "bad id");
        return r;
    }
};

}  // namespace

class Store {
public:
    explicit Store(Options o) : opt_(std::move(o)) {
        make_dir(opt_.root, 0700);
        for (const char* d : {"blobs", "blobs/sha256", "layers", "l", "images", "tmp"})
            make_dir(opt_.root + "/" + d, 0700);
        recover();
    }

    // Cancels the pulls in flight and waits for them: nothing may use the
    // store once it is gone.
    ~Store() {
        std::unique_lock lock(mu_);
        stopping_ = true;
        for (auto* p : active_) p->cancel();
        idle_.wait(lock, [&] { return active_.empty(); });
    }

    const Options& options() const { return opt_; }

    std::string pull(const std::string& text, const PullAuth& auth);
    std::vector<ImageInfo> list(const std::string& ref) const {
        std::lock_guard lock(mu_);
        std::vector<ImageInfo> out;
        if (!ref.empty()) {
            if (const Record* r = find_locked(ref)) out.push_back(info(*r, false));
            return out;
        }
        for (const auto& [id, r] : images_) out.push_back(info(r, false));
        return out;
    }
    std::optional<ImageInfo> status(const std::string& ref) const {
        std::lock_guard lock(mu_);
        std::string repository;
        const Record* r = find_locked(ref, &repository);
        if (!r) return std::nullopt;
        auto i = info(*r);
        // The digest under the repository `ref` named (an image pulled under
        // two names has one for each); else the first.
        for (const auto& d : r->repo_digests)
            if (!repository.empty() && d.starts_with(repository + "@")) i.ref_digest = d;
        if (i.ref_digest.empty() && !r->repo_digests.empty()) i.ref_digest = r->repo_digests.front();
        return i;
    }
    void remove(const std::string& ref);
    std::size_t count() const {
        std::lock_guard lock(mu_);
        return images_.size();
    }
    FsUsage usage() const {
        const auto u = disk_usage(opt_.root);
        return FsUsage{opt_.root, u.bytes, u.inodes, now_unix_ns()};
    }
    std::string acquire(const std::string& ref, const std::string& user) {
        std::lock_guard lock(mu_);
        const Record* r = find_locked(ref);
        if (!r) throw Error(Code::NotFound, "image \"" + ref + "\" not found");
        users_[r->id].insert(user);
        return r->id;
    }
    void release(const std::string& id, const std::string& user) {
        std::lock_guard lock(mu_);
        auto it = users_.find(id);
        if (it == users_.end()) return;
        it->second.erase(user);
        if (it->second.empty()) users_.erase(it);
    }
    std::vector<std::string> lower_dirs(const std::string& id) const {
        std::lock_guard lock(mu_);
        const auto it = images_.find(id);
        if (it == images_.end()) throw Error(Code::NotFound, "image " + id + " not found");
        std::vector<std::string> out;
        for (auto l = it->second.layers.rbegin(); l != it->second.layers.rend(); ++l)
            out.push_back("l/" + read_text(layer_dir(l->digest) + "/link"));
        return out;
    }

private:
    std::string blob_path(const std::string& digest) const { return opt_.root + "/blobs/sha256/" + digest_hex(digest); }
    std::string layer_dir(const std::string& digest) const { return opt_.root + "/layers/" + digest_hex(digest); }
    std::string record_path(const std::string& id) const { return opt_.root + "/images/" + digest_hex(id) + ".json"; }
    bool layer_present(const std::string& digest) const {
        struct stat st {};
        return ::stat((layer_dir(digest) + "/link").c_str(), &st) == 0;
    }

    // With `config`, the config JSON too (a file read: ImageStatus, not ListImages).
    ImageInfo info(const Record& r, bool config = true) const {
        ImageInfo i;
        i.id = r.id;
        i.repo_tags = r.repo_tags;
        i.repo_digests = r.repo_digests;
        i.size = r.size;
        i.manifest_digest = r.manifest_digest;
        i.pulled_at_ns = r.pulled_at_ns;
        for (const auto& l : r.layers) i.layers.push_back(l.digest);
        // User "1000", "1000:1000" -> uid; "app", "app:grp" -> username.
        const std::string user = r.user.substr(0, r.user.find(':'));
        if (user.empty()) {
            i.uid = 0;
        } else if (std::all_of(user.begin(), user.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                   user.size() < 12) {
            i.uid = std::stoll(user);
        } else {
            i.username = user;
        }
        if (config) {
            try {
                i.config_json = read_text(blob_path(r.config_digest));
            } catch (const Error&) {
            }
        }
        return i;
    }

    // The record `ref` names: an id ("sha256:<hex>", "<hex>" or a unique hex
    // prefix), name@digest, or name[:tag] (short names through registries.conf).
    // `repository`: the name the reference resolved to, when it was a name.
    const Record* find_locked(const std::string& ref, std::string* repository = nullptr) const {
        if (ref.empty()) return nullptr;
        std::string hex = ref.starts_with("sha256:") ? ref.substr(7) : ref;
        if (is_hex(hex) && hex.size() == 64) {
            const auto it = images_.find("sha256:" + hex);
            if (it != images_.end()) return &it->second;
            if (ref.starts_with("sha256:")) return nullptr;
        }
        Reference parsed;
        try {
            parsed = parse_reference(ref);
        } catch (const Error&) {
            parsed = {};
        }
        if (!parsed.path.empty()) {
            std::vector<Reference> candidates;
            try {
                candidates = resolve_short_name(load_registries_conf(opt_.registries_conf), parsed);
            } catch (const Error&) {
                candidates = {normalize_reference(ref)};
            }
            for (const auto& c : candidates) {
                const std::string tagged = c.digest.empty() ? c.tagged() : "";
                const std::string digested = c.digested();
                for (const auto& [id, r] : images_) {
                    if ((!tagged.empty() &&
                         std::find(r.repo_tags.begin(), r.repo_tags.end(), tagged) != r.repo_tags.end()) ||
                        (!digested.empty() &&
                         std::find(r.repo_digests.begin(), r.repo_digests.end(), digested) != r.repo_digests.end())) {
                        if (repository) *repository = c.name();
                        return &r;
                    }
                }
            }
        }
        // A unique id prefix (at least 3 hex digits), like docker and crictl.
        if (is_hex(hex) && hex.size() >= 3 && hex.size() < 64) {
            const Record* found = nullptr;
            for (const auto& [id, r] : images_)
                if (id.compare(7, hex.size(), hex) == 0) {
                    if (found) return nullptr;
                    found = &r;
                }
            return found;
        }
        return nullptr;
    }

    void recover();
    void collect_garbage_locked();
    std::string pull_once(const std::string& text, const PullAuth& auth);
    void ensure_layer(const Descriptor& d, const std::string& diff_id, RegistryClient& client,
                      PullProgress& progress);
    void fetch_layer(const Descriptor& d, const std::string& diff_id, RegistryClient& client);
    void store_blob(const std::string& digest, const std::string& data) {
        const std::string p = blob_path(digest);
        struct stat st {};
        if (::stat(p.c_str(), &st) == 0) return;
        write_atomic(p, data);
    }

    Options opt_;
    mutable std::mutex mu_;
    std::map<std::string, Record> images_;                    // by id
    std::map<std::string, std::set<std::string>> users_;      // id -> containers using it
    std::multiset<std::string> pinned_layers_;                // layers of pulls in flight
    std::map<std::string, std::shared_future<std::string>> pulls_;  // in flight, by reference+auth
    std::map<std::string, std::shared_future<void>> layer_fetches_;  // in flight, by digest
    std::set<PullProgress*> active_;                                 // pulls running now
    bool stopping_ = false;
    std::condition_variable idle_;
};

void Store::recover() {
    // Whatever a crash left in tmp/ is incomplete by construction.
    const std::string tmp = opt_.root + "/tmp";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(tmp, ec)) {
        spdlog::info("image store: removing leftover {}", e.path().string());
        remove_tree(e.path().string());
    }
    for (const auto& e : fs::directory_iterator(opt_.root + "/images", ec)) {
        const std::string p = e.path().string();
        if (e.path().extension() != ".json") {
            spdlog::info("image store: removing leftover {}", p);
            ::unlink(p.c_str());
            continue;
        }
        try {
            Record r = Record::from_json(json::parse(read_text(p)));
            bool complete = true;
            for (const auto& l : r.layers) complete = complete && layer_present(l.digest);
            struct stat st {};
            complete = complete && ::stat(blob_path(r.config_digest).c_str(), &st) == 0;
            if (!complete) {
                spdlog::warn("image store: image {} misses layers; dropping its record", r.id);
                ::unlink(p.c_str());
                continue;
            }
            images_[r.id] = std::move(r);
        } catch (const std::exception& ex) {
            spdlog::warn("image store: dropping unreadable record {}: {}", p, ex.what());
            ::unlink(p.c_str());
        }
    }
    collect_garbage_locked();
    // Every layer has its short link (a crash may fall between the rename of
    // the layer and the link).
    for (const auto& e : fs::directory_iterator(opt_.root + "/layers", ec)) {
        try {
            const std::string link = read_text(e.path().string() + "/link");
            const std::string lp = opt_.root + "/l/" + link;
            const std::string target = "../layers/" + e.path().filename().string() + "/diff";
            if (::symlink(target.c_str(), lp.c_str()) != 0 && errno != EEXIST) throw_errno("symlink " + lp);
        } catch (const std::exception& ex) {
            spdlog::warn("image store: layer {}: {}", e.path().string(), ex.what());
        }
    }
    spdlog::info("image store {}: {} image(s)", opt_.root, images_.size());
}

// Removes layers and blobs no record refers to (and no pull in flight pins).
void Store::collect_garbage_locked() {
    std::set<std::string> layers, blobs;
    for (const auto& [id, r] : images_) {
        for (const auto& l : r.layers) layers.insert(digest_hex(l.digest));
        blobs.insert(digest_hex(r.config_digest));
        blobs.insert(digest_hex(r.manifest_digest));
        for (const auto& d : r.repo_digests) {
            const auto at = d.find('@');
            if (at != std::string::npos && is_sha256_digest(d.substr(at + 1))) blobs.insert(digest_hex(d.substr(at + 1)));
        }
    }
    for (const auto& p : pinned_layers_) layers.insert(digest_hex(p));
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(opt_.root + "/layers", ec)) {
        const std::string hex = e.path().filename().string();
        if (layers.count(hex)) continue;
        const std::string dir = e.path().string();
        std::string link;
        try {
            link = read_text(dir + "/link");
        } catch (const Error&) {
        }
        if (!link.empty()) ::unlink((opt_.root + "/l/" + link).c_str());
        // Out of sight first (a rename), then deleted.
        const std::string gone = opt_.root + "/tmp/gone-" + hex;
        if (::rename(dir.c_str(), gone.c_str()) == 0) remove_tree(gone);
        spdlog::debug("image store: removed layer sha256:{}", hex);
    }
    for (const auto& e : fs::directory_iterator(opt_.root + "/blobs/sha256", ec)) {
        const std::string name = e.path().filename().string();
        if (!blobs.count(name) && !name.starts_with(".")) ::unlink(e.path().c_str());
    }
    // Links whose layer is gone.
    for (const auto& e : fs::directory_iterator(opt_.root + "/l", ec)) {
        struct stat st {};
        if (::stat(e.path().c_str(), &st) != 0) ::unlink(e.path().c_str());
    }
}

void Store::remove(const std::string& ref) {
    std::lock_guard lock(mu_);
    const Record* found = find_locked(ref);
    if (!found) {
        spdlog::debug("RemoveImage {}: no such image (nothing to do)", ref);
        return;
    }
    Record r = *found;
    if (const auto u = users_.find(r.id); u != users_.end() && !u->second.empty())
        throw Error(Code::FailedPrecondition, "image " + r.id + " (" + ref + ") is in use by container " +
                                                  *u->second.begin() +
                                                  (u->second.size() > 1 ? " and " + std::to_string(u->second.size() - 1) + " more" : ""));
    // A tag of an image with several tags: untag only.
    std::string tag;
    try {
        Reference p = parse_reference(ref);
        if (p.digest.empty()) {
            for (const auto& c : resolve_short_name(load_registries_conf(opt_.registries_conf), p))
                if (std::find(r.repo_tags.begin(), r.repo_tags.end(), c.tagged()) != r.repo_tags.end()) tag = c.tagged();
        }
    } catch (const Error&) {
    }
    if (!tag.empty() && r.repo_tags.size() > 1) {
        r.repo_tags.erase(std::find(r.repo_tags.begin(), r.repo_tags.end(), tag));
        write_atomic(record_path(r.id), r.to_json().dump(2));
        images_[r.id] = r;
        spdlog::info("untagged {} from image {}", tag, r.id);
        return;
    }
    if (::unlink(record_path(r.id).c_str()) != 0 && errno != ENOENT) throw_errno("removing " + record_path(r.id));
    images_.erase(r.id);
    collect_garbage_locked();
    spdlog::info("removed image {} ({})", r.id, ref);
}

void Store::fetch_layer(const Descriptor& d, const std::string& diff_id, RegistryClient& client) {
    const std::string hex = digest_hex(d.digest);
    const std::string stage = opt_.root + "/tmp/layer-" + hex.substr(0, 16) + "-" + random_name(6);
    make_dir(stage, 0700);
    struct Cleanup {
        std::string path;
        ~Cleanup() {
            if (path.empty()) return;
            try {
                remove_tree(path);
            } catch (const std::exception& e) {
                spdlog::warn("removing {}: {}", path, e.what());
            }
        }
    } cleanup{stage};
    // The blob goes to an unnamed file: a crash leaves nothing of it.
    UniqueFd blob(::open((opt_.root + "/tmp").c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (!blob && (errno == EOPNOTSUPP || errno == EISDIR)) {
        // No O_TMPFILE on this file system: a named file, unlinked at once.
        const std::string name = stage + ".blob";
        blob.reset(::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (blob) ::unlink(name.c_str());
    }
    if (!blob) throw_errno("creating a temporary file in " + opt_.root + "/tmp");
    const auto t0 = std::chrono::steady_clock::now();
    client.get_blob_to_fd(d.digest, d.size, blob.get());
    if (::lseek(blob.get(), 0, SEEK_SET) != 0) throw_errno("lseek");
    const auto t1 = std::chrono::steady_clock::now();
    make_dir(stage + "/diff", 0755);
    UniqueFd diff(::open((stage + "/diff").c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (!diff) throw_errno("opening " + stage + "/diff");
    // The uncompressed stream must be the config's diff_id: hashed from a
    // second open file description, alongside the unpack.
    std::future<std::string> unpacked_digest;
    if (!diff_id.empty()) {
        UniqueFd again(::open(("/proc/self/fd/" + std::to_string(blob.get())).c_str(), O_RDONLY | O_CLOEXEC));
        if (!again) throw_errno("reopening the blob of layer " + d.digest);
        unpacked_digest = std::async(std::launch::async, [fd = std::move(again)] { return uncompressed_digest(fd.get()); });
    }
    const UnpackStats stats =
        with_context("unpacking layer " + d.digest, [&] { return unpack_layer(blob.get(), diff.get()); });
    if (unpacked_digest.valid()) {
        const std::string got = with_context("layer " + d.digest, [&] { return unpacked_digest.get(); });
        if (got != diff_id)
            throw Error(Code::DataLoss, "layer " + d.digest + ": uncompressed content is " + got +
                                            ", the image config says " + diff_id);
    }
    const auto t2 = std::chrono::steady_clock::now();
    std::string link;
    for (int i = 0; i < 100 && link.empty(); ++i) {
        link = random_name(10);
        struct stat st {};
        if (::lstat((opt_.root + "/l/" + link).c_str(), &st) == 0) link.clear();
    }
    write_atomic(stage + "/link", link);
    ::syncfs(diff.get());
    const std::string dest = layer_dir(d.digest);
    if (::rename(stage.c_str(), dest.c_str()) != 0) {
        if (errno == ENOTEMPTY || errno == EEXIST) return;  // someone else finished it
        throw_errno("moving layer into " + dest);
    }
    cleanup.path.clear();
    const std::string lp = opt_.root + "/l/" + link;
    if (::symlink(("../layers/" + hex + "/diff").c_str(), lp.c_str()) != 0) throw_errno("symlink " + lp);
    using ms = std::chrono::milliseconds;
    spdlog::info("layer {}: {} bytes fetched in {} ms, {} entries ({} bytes) unpacked in {} ms", d.digest, d.size,
                 std::chrono::duration_cast<ms>(t1 - t0).count(), stats.entries, stats.file_bytes,
                 std::chrono::duration_cast<ms>(t2 - t1).count());
}

// Makes the layer present, fetching it unless it is there or being fetched.
void Store::ensure_layer(const Descriptor& d, const std::string& diff_id, RegistryClient& client,
                         PullProgress& progress) {
    std::shared_future<void> wait_for;
    std::promise<void> mine;
    {
        std::unique_lock lock(mu_);
        if (layer_present(d.digest)) {
            progress.add_done(d.size);
            return;
        }
        const auto it = layer_fetches_.find(d.digest);
        if (it != layer_fetches_.end()) {
            wait_for = it->second;
        } else {
            layer_fetches_[d.digest] = mine.get_future().share();
        }
    }
    if (wait_for.valid()) {
        try {
            wait_for.get();  // the other pull's failure comes back here
        } catch (const Error& e) {
            // That pull was cancelled (one of its other layers failed, or its
            // client gave up): this pull fetches the layer itself.
            if (e.code() != Code::Cancelled || progress.cancelled()) throw;
            ensure_layer(d, diff_id, client, progress);
        }
        return;
    }
    // The entry goes before the result is published: a waiter that retries
    // never finds the finished attempt again.
    auto done = [&] {
        std::lock_guard lock(mu_);
        layer_fetches_.erase(d.digest);
    };
    try {
        fetch_layer(d, diff_id, client);
    } catch (...) {
        done();
        mine.set_exception(std::current_exception());
        throw;
    }
    done();
    mine.set_value();
}

std::string Store::pull(const std::string& text, const PullAuth& auth) {
    // Concurrent pulls of one reference (with the same credentials) share one pull.
    const std::string key = text + '\0' + auth.username + '\0' + auth.password + '\0' + auth.auth + '\0' +
                            auth.identity_token + '\0' + auth.registry_token;
    std::shared_future<std::string> wait_for;
    std::promise<std::string> mine;
    {
        std::lock_guard lock(mu_);
        const auto it = pulls_.find(key);
        if (it != pulls_.end())
            wait_for = it->second;
        else
            pulls_[key] = mine.get_future().share();
    }
    if (wait_for.valid()) {
        spdlog::info("pull {}: joining the pull in progress", text);
        return wait_for.get();
    }
    try {
        std::string id = pull_once(text, auth);
        mine.set_value(id);
        std::lock_guard lock(mu_);
        pulls_.erase(key);
        return id;
    } catch (...) {
        mine.set_exception(std::current_exception());
        std::lock_guard lock(mu_);
        pulls_.erase(key);
        throw;
    }
}

std::string Store::pull_once(const std::string& text, const PullAuth& auth) {
    const Reference parsed = parse_reference(text);
    const RegistriesConf conf = load_registries_conf(opt_.registries_conf);
    const auto candidates = resolve_short_name(conf, parsed);
    const auto start = std::chrono::steady_clock::now();

    Credentials cri_creds;
    if (!auth.auth.empty()) cri_creds = decode_auth(auth.auth);
    if (!auth.username.empty()) cri_creds.username = auth.username;
    if (!auth.password.empty()) cri_creds.password = auth.password;
    cri_creds.identity_token = auth.identity_token;
    cri_creds.registry_token = auth.registry_token;

    PullProgress progress(opt_.pull_progress_timeout);
    {
        std::lock_guard lock(mu_);
        if (stopping_) throw Error(Code::Unavailable, "crisd is shutting down");
        active_.insert(&progress);
    }
    struct Inactive {
        Store& s;
        PullProgress* p;
        ~Inactive() {
            std::lock_guard lock(s.mu_);
            s.active_.erase(p);
            s.idle_.notify_all();
        }
    } inactive{*this, &progress};
    // Progress in the log every few seconds while the pull runs.
    std::mutex log_mu;
    std::condition_variable log_cv;
    bool finished = false;
    std::thread logger([&] {
        std::unique_lock lock(log_mu);
        while (!log_cv.wait_for(lock, opt_.progress_log_interval, [&] { return finished; })) {
            spdlog::info("pull {}: {:.1f} of {:.1f} MiB", text, progress.done() / 1048576.0,
                         progress.total() / 1048576.0);
        }
    });
    struct StopLogger {
        std::mutex& mu;
        std::condition_variable& cv;
        bool& finished;
        std::thread& t;
        ~StopLogger() {
            {
                std::lock_guard lock(mu);
                finished = true;
            }
            cv.notify_all();
            t.join();
        }
    } stop_logger{log_mu, log_cv, finished, logger};

    std::optional<Error> first_error;
    for (const auto& candidate : candidates) {
        // The policy speaks of the name asked for, not of the mirror it comes from.
        check_policy_file(opt_.signature_policy, candidate);
        for (const auto& src : pull_sources(conf, candidate)) {
            const std::string where = src.ref.str() + (src.mirror ? " (mirror of " + candidate.str() + ")" : "");
            try {
                Credentials creds = cri_creds;
                if (creds.empty()) {
                    if (auto c = find_credentials(auth_files(opt_.global_auth_file), src.ref.name())) creds = *c;
                }
                RegistryClient client(src.ref.domain, src.ref.path, src.insecure, creds,
                                      RegistryOptions{opt_.connect_timeout}, progress);
                const std::string wanted = src.ref.digest.empty() ? src.ref.tag : src.ref.digest;
                FetchedManifest top = client.get_manifest(wanted);
                if (!src.ref.digest.empty() && top.digest != src.ref.digest)
                    throw Error(Code::DataLoss, "manifest digest mismatch");
                Manifest m = parse_manifest(top.body, top.content_type);
                FetchedManifest platform_manifest = top;
                if (m.is_index) {
                    const Descriptor& d = select_platform(m, node_platform(), candidate.str());
                    platform_manifest = client.get_manifest(d.digest);
                    m = parse_manifest(platform_manifest.body, platform_manifest.content_type);
                    if (m.is_index) throw Error(Code::InvalidArgument, "an index inside an index is not supported");
                }
                const std::string config = client.get_blob(m.config.digest, std::min<std::int64_t>(m.config.size, 16 << 20));
                const ImageConfig cfg = parse_image_config(config);
                if (!cfg.diff_ids.empty() && cfg.diff_ids.size() != m.layers.size())
                    throw Error(Code::InvalidArgument, "image config lists " + std::to_string(cfg.diff_ids.size()) +
                                                           " layers, the manifest " + std::to_string(m.layers.size()));
                const std::string id = m.config.digest;
                {
                    std::lock_guard lock(mu_);
                    for (const auto& l : m.layers) pinned_layers_.insert(l.digest);
                }
                struct Unpin {
                    Store& s;
                    const std::vector<Descriptor>& layers;
                    ~Unpin() {
                        std::lock_guard lock(s.mu_);
                        for (const auto& l : layers) s.pinned_layers_.erase(s.pinned_layers_.find(l.digest));
                    }
                } unpin{*this, m.layers};

                // The layers, several at once; one already present is not fetched.
                for (const auto& l : m.layers) progress.add_total(l.size);
                std::counting_semaphore<64> slots(std::clamp(opt_.max_parallel_downloads, 1, 64));
                std::vector<std::thread> workers;
                std::mutex err_mu;
                std::exception_ptr layer_error;
                for (std::size_t i = 0; i < m.layers.size(); ++i) {
                    const Descriptor& l = m.layers[i];
                    const std::string diff_id = i < cfg.diff_ids.size() ? cfg.diff_ids[i] : "";
                    slots.acquire();
                    {
                        std::lock_guard lock(err_mu);
                        if (layer_error) {
                            slots.release();
                            break;
                        }
                    }
                    workers.emplace_back([&, l, diff_id] {
                        try {
                            ensure_layer(l, diff_id, client, progress);
                        } catch (...) {
                            std::lock_guard lock(err_mu);
                            if (!layer_error) layer_error = std::current_exception();
                            progress.cancel();
                        }
                        slots.release();
                    });
                }
                for (auto& w : workers) w.join();
                if (layer_error) std::rethrow_exception(layer_error);

                // Blobs, then the record: the image exists once its record does.
                const std::string tag = candidate.digest.empty() ? candidate.tagged() : "";
                const std::string repo_digest = candidate.name() + "@" + top.digest;
                std::lock_guard lock(mu_);
                store_blob(m.config.digest, config);
                store_blob(platform_manifest.digest, platform_manifest.body);
                store_blob(top.digest, top.body);
                Record r;
                if (const auto it = images_.find(id); it != images_.end()) r = it->second;
                r.id = id;
                r.config_digest = m.config.digest;
                r.manifest_digest = platform_manifest.digest;
                r.layers = m.layers;
                r.size = m.config.size;
                for (const auto& l : m.layers) r.size += l.size;
                r.user = cfg.user;
                r.pulled_at_ns = now_unix_ns();
                if (!tag.empty() && std::find(r.repo_tags.begin(), r.repo_tags.end(), tag) == r.repo_tags.end())
                    r.repo_tags.push_back(tag);
                if (std::find(r.repo_digests.begin(), r.repo_digests.end(), repo_digest) == r.repo_digests.end())
                    r.repo_digests.push_back(repo_digest);
                // A tag names one image: take it from the image that had it.
                std::vector<std::string> emptied;
                for (auto& [oid, other] : images_) {
                    if (oid == id || tag.empty()) continue;
                    auto t = std::find(other.repo_tags.begin(), other.repo_tags.end(), tag);
                    if (t == other.repo_tags.end()) continue;
                    other.repo_tags.erase(t);
                    write_atomic(record_path(oid), other.to_json().dump(2));
                }
                write_atomic(record_path(id), r.to_json().dump(2));
                images_[id] = r;
                using ms = std::chrono::milliseconds;
                spdlog::info("pulled {} from {}: image {} ({} layers, {} bytes) in {} ms", text, where, id,
                             m.layers.size(), r.size,
                             std::chrono::duration_cast<ms>(std::chrono::steady_clock::now() - start).count());
                return id;
            } catch (const Error& e) {
                spdlog::info("pull {}: from {}: {}", text, where, e.what());
                Error wrapped = e.wrap("pulling " + src.ref.str());
                // The error worth reporting: the first that is not "not found"
                // (short names try several registries), else the first.
                if (!first_error || (first_error->code() == Code::NotFound && e.code() != Code::NotFound))
                    first_error = wrapped;
                // Cancelled or stalled: another source would not help.
                if (e.code() == Code::DeadlineExceeded && !src.mirror) break;
            }
        }
    }
    throw *first_error;
}

Images::Images(Options options) : store_(std::make_unique<Store>(std::move(options))) {}
Images::~Images() = default;
std::string Images::pull(const std::string& ref, const PullAuth& auth) { return store_->pull(ref, auth); }
std::vector<ImageInfo> Images::list(const std::string& ref) const { return store_->list(ref); }
std::optional<ImageInfo> Images::status(const std::string& ref) const { return store_->status(ref); }
void Images::remove(const std::string& ref) { store_->remove(ref); }
FsUsage Images::usage() const { return store_->usage(); }
std::size_t Images::count() const { return store_->count(); }
const Options& Images::options() const { return store_->options(); }
std::string Images::acquire(const std::string& ref, const std::string& user) { return store_->acquire(ref, user); }
void Images::release(const std::string& id, const std::string& user) { store_->release(id, user); }
std::vector<std::string> Images::lower_dirs(const std::string& id) const { return store_->lower_dirs(id); }
ImageConfig Images::config(const std::string& ref) const {
    const auto info = store_->status(ref);
    if (!info) throw Error(Code::NotFound, "image \"" + ref + "\" not found");
    return parse_image_config(info->config_json);
}

}  // namespace crisd::image
