#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "config/config.hpp"

namespace fs = std::filesystem;
using namespace crisd;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/crisd-config-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string file(const std::string& name, const std::string& content) const {
        const auto p = fs::path(path_) / name;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << content;
        return p.string();
    }
    std::string path(const std::string& name = "") const { return (fs::path(path_) / name).string(); }

private:
    std::string path_;
};

std::string load_error(const config::Sources& src) {
    try {
        config::load(src);
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::InvalidArgument) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "load did not fail";
    return "";
}

}  // namespace

TEST(Config, DefaultsWithoutAnyFile) {
    TempDir dir;
    const auto cfg = config::load({dir.path("crisd.conf"), dir.path("crisd.conf.d"), false});
    EXPECT_EQ(cfg.root, "/var/lib/crisd");
    EXPECT_EQ(cfg.runroot, "/run/crisd");
    EXPECT_EQ(cfg.api.listen, "/run/crisd/crisd.sock");
    EXPECT_EQ(cfg.runtime.default_runtime, "runc");
    EXPECT_EQ(cfg.runtime.runtimes.count("runc"), 1u);
    EXPECT_EQ(cfg.runtime.runtimes.count("crun"), 1u);
}

TEST(Config, MissingRequiredFileIsAnError) {
    TempDir dir;
    try {
        config::load({dir.path("nope.conf"), "", true});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::NotFound);
        EXPECT_NE(std::string(e.what()).find("nope.conf"), std::string::npos);
    }
}

TEST(Config, MainFileThenDropInsInLexicalOrder) {
    TempDir dir;
    const auto main = dir.file("crisd.conf", "[crisd]\nlog_level = \"debug\"\nroot = \"/srv/a\"\n");
    dir.file("crisd.conf.d/20-b.conf", "[crisd]\nroot = \"/srv/b\"\n");
    dir.file("crisd.conf.d/10-a.conf", "[crisd]\nroot = \"/srv/x\"\nrunroot = \"/run/x\"\n");
    dir.file("crisd.conf.d/99-ignored.toml", "[crisd]\nroot = \"/srv/ignored\"\n");
    dir.file("crisd.conf.d/.hidden.conf", "[crisd]\nroot = \"/srv/hidden\"\n");
    const auto cfg = config::load({main, dir.path("crisd.conf.d"), true});
    EXPECT_EQ(cfg.log_level, "debug");  // main file, untouched by drop-ins
    EXPECT_EQ(cfg.root, "/srv/b");      // 20-b wins over 10-a and the main file
    EXPECT_EQ(cfg.runroot, "/run/x");   // 10-a
}

TEST(Config, DropInAddsAndChangesRuntimeHandlers) {
    TempDir dir;
    dir.file("d/10.conf",
             "[crisd.runtime]\ndefault_runtime = \"crun\"\n"
             "[crisd.runtime.runtimes.kata]\nruntime_path = \"/usr/bin/kata-runtime\"\n"
             "runtime_root = \"/run/kata\"\n"
             "[crisd.runtime.runtimes.runc]\nruntime_root = \"/run/runc-alt\"\n");
    const auto cfg = config::load({dir.path("none.conf"), dir.path("d"), false});
    EXPECT_EQ(cfg.runtime.default_runtime, "crun");
    EXPECT_EQ(cfg.runtime.runtimes.at("kata").runtime_path, "/usr/bin/kata-runtime");
    EXPECT_EQ(cfg.runtime.runtimes.at("runc").runtime_root, "/run/runc-alt");
    EXPECT_EQ(cfg.runtime.runtimes.at("runc").runtime_type, "oci");
}

TEST(Config, UnknownKeyNamesFileAndKey) {
    TempDir dir;
    const auto f = dir.file("crisd.conf", "[crisd.api]\nlisten = \"/run/x.sock\"\nlistne = 1\n");
    const auto msg = load_error({f, "", true});
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_NE(msg.find("unknown key crisd.api.listne"), std::string::npos) << msg;
}

TEST(Config, UnknownTopLevelTableAndHandlerKey) {
    TempDir dir;
    EXPECT_NE(load_error({dir.file("a.conf", "[crio]\nroot = \"/x\"\n"), "", true})
                  .find("unknown key crio"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("b.conf", "[crisd.runtime.runtimes.runc]\npath = \"/x\"\n"), "",
                          true})
                  .find("unknown key crisd.runtime.runtimes.runc.path"),
              std::string::npos);
}

TEST(Config, WrongTypeNamesFileKeyAndTypes) {
    TempDir dir;
    const auto f = dir.file("crisd.conf", "[crisd.api]\nshutdown_timeout = \"10\"\n");
    const auto msg = load_error({f, "", true});
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_NE(msg.find("crisd.api.shutdown_timeout: expected an integer, got a string"),
              std::string::npos)
        << msg;
    const auto g = dir.file("g.conf", "crisd = 5\n");
    EXPECT_NE(load_error({g, "", true}).find("crisd: expected a table, got an integer"),
              std::string::npos);
}

TEST(Config, BadDropInIsNamed) {
    TempDir dir;
    dir.file("d/10-good.conf", "[crisd]\nroot = \"/srv/a\"\n");
    const auto bad = dir.file("d/20-bad.conf", "[crisd\nroot = ");
    const auto msg = load_error({dir.path("none.conf"), dir.path("d"), false});
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
}

TEST(Config, InvalidValuesAreRejected) {
    TempDir dir;
    EXPECT_NE(load_error({dir.file("a.conf", "[crisd]\nlog_level = \"loud\"\n"), "", true})
                  .find("crisd.log_level"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("b.conf", "[crisd]\nroot = \"relative/dir\"\n"), "", true})
                  .find("crisd.root: \"relative/dir\" is not an absolute path"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("c.conf", "[crisd.runtime]\ndefault_runtime = \"kata\"\n"), "",
                          true})
                  .find("crisd.runtime.default_runtime: \"kata\" has no"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("d.conf", "[crisd.runtime.runtimes.Bad_Name]\n"), "", true})
                  .find("not a DNS label"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("e.conf", "[crisd.api]\ngrpc_max_recv_msg_size = 10\n"), "",
                          true})
                  .find("crisd.api.grpc_max_recv_msg_size"),
              std::string::npos);
}

TEST(Config, StringListsAndTheirErrors) {
    TempDir dir;
    const auto cfg = config::load(
        {dir.file("a.conf", "[crisd.network]\nplugin_dirs = [\"/x/bin\", \"/y/bin\"]\n"), "", true});
    EXPECT_EQ(cfg.network.plugin_dirs, (std::vector<std::string>{"/x/bin", "/y/bin"}));
    EXPECT_NE(load_error({dir.file("b.conf", "[crisd.network]\nplugin_dirs = \"/x\"\n"), "", true})
                  .find("crisd.network.plugin_dirs: expected an array of strings, got a string"),
              std::string::npos);
    EXPECT_NE(load_error({dir.file("c.conf", "[crisd.network]\nplugin_dirs = [\"/x\", 3]\n"), "", true})
                  .find("crisd.network.plugin_dirs[1]: expected a string, got an integer"),
              std::string::npos);
}

TEST(Config, PrintedConfigHasEveryKeyAndLoadsBack) {
    auto cfg = config::defaults();
    cfg.root = "/srv/with \"quotes\" and \\";
    cfg.runtime.runtimes["kata"] = {"/usr/bin/kata", "/run/kata", "oci"};
    cfg.network.plugin_dirs = {"/a", "/b \"c\""};
    const std::string text = config::to_toml(cfg);
    for (const auto& key : config::key_docs()) {
        const auto name = key.name.substr(key.name.rfind('.') + 1);
        EXPECT_NE(text.find("\n" + name + " = "), std::string::npos) << key.name;
    }
    config::Config back = config::defaults();
    back.runtime.runtimes.clear();
    config::apply_toml(back, text, "printed");
    EXPECT_EQ(back.root, cfg.root);
    EXPECT_EQ(back.network.plugin_dirs, cfg.network.plugin_dirs);
    EXPECT_EQ(back.runtime.runtimes.size(), 3u);
    EXPECT_EQ(back.runtime.runtimes.at("kata").runtime_path, "/usr/bin/kata");
    EXPECT_EQ(config::to_toml(back), text);
}

// docs/configuration.md lists every key with its type and default, and no key
// that does not exist.
TEST(Config, ReferenceDocumentsEveryKey) {
    std::ifstream in(std::string(CRISD_SOURCE_ROOT) + "/docs/configuration.md");
    ASSERT_TRUE(in) << "docs/configuration.md is missing";
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string doc = ss.str();
    std::set<std::string> known;
    for (const auto& key : config::key_docs()) {
        known.insert(key.name);
        const std::string row =
            "| `" + key.name + "` | " + key.type + " | `" + key.default_value + "` |";
        EXPECT_NE(doc.find(row), std::string::npos) << "missing or stale row: " << row;
    }
    std::istringstream lines(doc);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("| `crisd.", 0) != 0) continue;
        const auto name = line.substr(3, line.find('`', 3) - 3);
        EXPECT_TRUE(known.count(name)) << "docs/configuration.md documents unknown key " << name;
    }
}

TEST(Config, CommentedFormChangesNothing) {
    config::Config cfg = config::defaults();
    config::apply_toml(cfg, config::to_toml(config::defaults(), true), "commented");
    EXPECT_EQ(config::to_toml(cfg), config::to_toml(config::defaults()));
}
