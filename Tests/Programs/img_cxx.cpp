// Image mode: C++ threads as people write them, threads on other nodes:
// std::thread, std::mutex and std::atomic counters; std::condition_variable
// wait_for (libstdc++ calls pthread_cond_clockwait) woken by another node
// well before its deadline; std::timed_mutex::try_lock_for against a holder
// on another node (pthread_mutex_clocklock); std::async; a global
// std::vector filled under a mutex by threads on every node.
//
// Usage: img_cxx   (exit 0: pass)
// Prints `img_cxx threads= failures=`.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

static int failures;
#define CHECK(cond, ...)                                                                                    \
    do {                                                                                                    \
        if (!(cond)) {                                                                                      \
            failures++;                                                                                     \
            std::printf("FAIL: " __VA_ARGS__);                                                              \
            std::printf("\n");                                                                              \
        }                                                                                                   \
    } while (0)

static std::mutex lock;
static std::condition_variable changed;
static bool ready;
static long guarded;
static std::atomic<long> counted;
static std::vector<int> results;
static std::timed_mutex timed;

int main() {
    const int threads = 4, rounds = 2000;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; t++)
        workers.emplace_back([t] {
            for (int i = 0; i < rounds; i++) {
                counted.fetch_add(1);
                std::lock_guard<std::mutex> g(lock);
                guarded++;
            }
            std::lock_guard<std::mutex> g(lock);
            results.push_back(t + 1);
        });
    for (auto &w : workers) w.join();
    CHECK(counted.load() == threads * rounds, "atomic counter %ld", counted.load());
    CHECK(guarded == threads * rounds, "mutex counter %ld", guarded);
    CHECK(results.size() == threads && std::accumulate(results.begin(), results.end(), 0) == threads * (threads + 1) / 2,
          "global vector: %zu entries", results.size());

    // wait_for, woken from another node after 100 ms.
    auto start = std::chrono::steady_clock::now();
    std::thread notifier([] {
        std::this_thread::sleep_for(100ms);
        std::lock_guard<std::mutex> g(lock);
        ready = true;
        changed.notify_one();
    });
    bool woken;
    {
        std::unique_lock<std::mutex> u(lock);
        woken = changed.wait_for(u, 10s, [] { return ready; });
    }
    notifier.join();
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(woken && took < 5, "condition_variable::wait_for: woken %d after %.2f s (notified after 0.1 s)", woken, took);
    {
        std::unique_lock<std::mutex> u(lock);
        start = std::chrono::steady_clock::now();
        bool never = changed.wait_for(u, 200ms, [] { return false; });
        took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        CHECK(!never && took > 0.15 && took < 5, "wait_for with no notification: %d after %.2f s", never, took);
    }

    // try_lock_for against a holder on another node.
    std::atomic<bool> holding{false};
    std::thread holder([&] {
        std::lock_guard<std::timed_mutex> g(timed);
        holding = true;
        std::this_thread::sleep_for(500ms);
    });
    while (!holding) std::this_thread::sleep_for(1ms);
    CHECK(!timed.try_lock_for(100ms), "timed_mutex::try_lock_for succeeded while held");
    bool got = timed.try_lock_for(10s);
    CHECK(got, "timed_mutex::try_lock_for(10 s) failed");
    if (got) timed.unlock();
    holder.join();

    auto future = std::async(std::launch::async, [] { return 6 * 7; });
    CHECK(future.get() == 42, "std::async");

    std::printf("img_cxx threads=%d failures=%d\n", threads, failures);
    return failures ? 1 : 0;
}
