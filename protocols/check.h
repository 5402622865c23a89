// FEDFM_CHECK: the one way a broken invariant (a bug, not bad input) stops the
// process. Bad input is reported through absl::Status instead. Active in every
// build type.
#ifndef FEDFM_PROTOCOLS_CHECK_H_
#define FEDFM_PROTOCOLS_CHECK_H_

namespace fedfm::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const char* message);
}  // namespace fedfm::internal

#define FEDFM_CHECK(condition)                                                    \
  do {                                                                            \
    if (!(condition)) ::fedfm::internal::CheckFailed(__FILE__, __LINE__, #condition, \
                                                     nullptr);                    \
  } while (0)

// As FEDFM_CHECK, with a fixed explanation (a string literal).
#define FEDFM_CHECK_MSG(condition, message)                                       \
  do {                                                                            \
    if (!(condition)) ::fedfm::internal::CheckFailed(__FILE__, __LINE__, #condition, \
                                                     (message));                  \
  } while (0)

#endif  // FEDFM_PROTOCOLS_CHECK_H_
