build/src/cmd/cli.o: src/cmd/cli.c src/cmd/cli.h src/core/http_client.h \
 src/core/util.h src/core/spec.h
src/cmd/cli.h:
src/core/http_client.h:
src/core/util.h:
src/core/spec.h:
