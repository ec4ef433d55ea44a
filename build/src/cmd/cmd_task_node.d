build/src/cmd/cmd_task_node.o: src/cmd/cmd_task_node.c src/cmd/cli.h \
 src/core/http_client.h src/core/util.h src/core/spec.h \
 src/cmd/commands.h
src/cmd/cli.h:
src/core/http_client.h:
src/core/util.h:
src/core/spec.h:
src/cmd/commands.h:
