build/tests/test_lifecycle: tests/unit/test_lifecycle.c \
 src/core/lifecycle.h tests/unit/unit.h
src/core/lifecycle.h:
tests/unit/unit.h:
