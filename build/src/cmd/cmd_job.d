build/src/cmd/cmd_job.o: src/cmd/cmd_job.c src/cmd/cli.h \
 src/core/http_client.h src/core/util.h src/core/spec.h \
 src/cmd/commands.h
src/cmd/cli.h:
src/core/http_client.h:
src/core/util.h:
src/core/spec.h:
src/cmd/commands.h:
