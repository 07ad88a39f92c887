"""The official SDK walking every Assistants call.

Run by record_sdk_requests.py with the SDK's own (throwaway) interpreter:
``python sdk_flow.py <url> <tmpdir>``.
"""

import os
import sys


def main() -> None:
    os.environ["GATEWAY_URL"] = sys.argv[1]
    os.environ["APPBUILDER_TOKEN"] = "fake-appbuilder-token"
    tmp = sys.argv[2]
    # Imported late: the SDK reads its environment on import.
    import appbuilder

    A = appbuilder.assistant
    assistant = A.assistants.create(
        name="test_assistant", description="test assistant", instructions="每句话回复前都加上我是秦始皇"
    )
    print("ASSISTANT", assistant)
    thread = A.threads.create()
    print("THREAD", thread)
    A.threads.messages.create(thread_id=thread.id, content="hello world")
    run_result = A.threads.runs.run(thread_id=thread.id, assistant_id=assistant.id)
    print("RUN", run_result)
    for r in A.threads.runs.list(thread_id=thread.id, limit=5).data:
        print("LIST", r)
    print("QUERY", A.threads.runs.query(thread_id=thread.id, run_id=run_result.id))
    steps = A.threads.runs.steps.list(thread_id=thread.id, run_id=run_result.id)
    for s in steps.data:
        print("STEP", s)
    print(
        "STEPQ",
        A.threads.runs.steps.query(thread_id=thread.id, run_id=run_result.id, step_id=steps.data[-1].id),
    )
    # function call non-stream
    tool = {
        "type": "function",
        "function": {
            "name": "get_cur_whether",
            "description": "天气",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["location"],
            },
        },
    }
    asst2 = A.assistants.create(
        name="weather",
        description="d",
        instructions="x",
        tools=[appbuilder.core.assistant.type.AssistantTool(**tool)],
    )
    th2 = A.threads.create()
    A.threads.messages.create(thread_id=th2.id, content="北京天气")
    r1 = A.threads.runs.run(thread_id=th2.id, assistant_id=asst2.id)
    print("FC1", r1)
    tc = r1.required_action.submit_tool_outputs.tool_calls[0]
    r2 = A.threads.runs.run(
        thread_id=th2.id,
        assistant_id=asst2.id,
        tool_output={"tool_call_id": tc.id, "output": "晴 25度", "run_id": r1.id},
    )
    print("FC2", r2)
    # stream plain
    th3 = A.threads.create()
    A.threads.messages.create(thread_id=th3.id, content="hi")
    for ev in A.threads.runs.stream_run(thread_id=th3.id, assistant_id=assistant.id):
        print("EV", ev)
    # stream with tool call
    run_id = ""
    th4 = A.threads.create()
    A.threads.messages.create(thread_id=th4.id, content="北京天气")
    for ev in A.threads.runs.stream_run(thread_id=th4.id, assistant_id=asst2.id):
        print("EV4", ev)
        if getattr(ev, "event_type", None) == "tool_calls":
            call = ev.details.tool_calls[0]
            print(
                "SUB",
                A.threads.runs.submit_tool_outputs(
                    thread_id=th4.id, run_id=run_id, tool_outputs=[{"tool_call_id": call.id, "output": "晴"}]
                ),
            )
        if getattr(ev, "event_type", None) == "run_begin":
            run_id = ev.details.run_object.id
    # stream cancel
    rid = ""
    th5 = A.threads.create()
    A.threads.messages.create(thread_id=th5.id, content="hi")
    for ev in A.threads.runs.stream_run(thread_id=th5.id, assistant_id=assistant.id):
        print("EV5", ev)
        if getattr(ev, "event_type", None) == "run_begin":
            rid = ev.details.run_object.id
        if getattr(ev, "event", None) == "message":
            print("CANCEL", A.threads.runs.cancel(thread_id=th5.id, run_id=rid))
    # files
    with open(os.path.join(tmp, "hello.txt"), "w") as fh:
        fh.write("hello file")
    f = A.assistants.files.create(file_path=os.path.join(tmp, "hello.txt"))
    print("FILE", f)
    print("FILES", A.assistants.files.list())
    print("FQ", A.assistants.files.query(file_id=f.id))
    print("CONTENT", A.assistants.files.content(file_id=f.id))
    A.assistants.files.download(file_id=f.id, file_path=tmp + "/")
    print("MOUNT", A.assistants.mount_files(assistant_id=assistant.id, file_id=f.id))
    print("MOUNTED", A.assistants.mounted_files_list(assistant_id=assistant.id))
    print("UNMOUNT", A.assistants.unmount_files(assistant_id=assistant.id, file_id=f.id))
    print(
        "UPD",
        A.assistants.update(
            assistant_id=assistant.id,
            model="ERNIE-4.0T-8K",
            name="renamed",
            description="d2",
            instructions="i2",
        ),
    )
    print("ALIST", A.assistants.list(limit=5))
    print("AQ", A.assistants.query(assistant_id=assistant.id))
    print("TQ", A.threads.query(thread_id=thread.id))
    print("TU", A.threads.update(thread_id=thread.id, metadata={"k": "v"}))
    m = A.threads.messages.create(thread_id=thread.id, content="with file", file_ids=[f.id])
    print("MF", A.threads.messages.files(thread_id=thread.id, message_id=m.id))
    print("MU", A.threads.messages.update(thread_id=thread.id, message_id=m.id, content="edited"))
    print("ML", A.threads.messages.list(thread_id=thread.id, limit=3))
    print("MQ", A.threads.messages.query(thread_id=thread.id, message_id=m.id))
    print("FDEL", A.assistants.files.delete(file_id=f.id))
    print("TDEL", A.threads.delete(thread_id=th5.id))
    print("ADEL", A.assistants.delete(assistant_id=asst2.id))


if __name__ == "__main__":
    main()
